Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.CloseTest do
  @moduledoc """
  Closing a connection (issue 11): a connection the BEAM closed ends,
  whatever the server does after our close frame, and the close handshake
  completes even when the server has more to send than the owner's credit.

  The servers are test/peers/evil_server.py: `/after_close?then=rst|fin|garbage`
  misbehaves instead of answering our close frame, `/flood_close` answers it
  only after thousands more messages. Each test runs its own driver (so its
  own port program), whose live connections `:ws_port_driver.program_stats/1`
  counts in the port program itself. Everything runs on 127.0.0.1.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.Peer

  @moduletag timeout: 120_000
  # liveness bound for something that must happen
  @wait 20_000
  # the retry delay given to the connections: a retry, if any, would come
  # this long after the failure
  @retry %{delay: 50, max_delay: 50, jitter: 0}

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    evil = Peer.start!(:evil)
    on_exit(fn -> Peer.stop(evil) end)
    %{evil: evil}
  end

  setup do
    name = :"ws_port_close_test_#{System.unique_integer([:positive])}"

    # WS_PORT_PROGRAM=priv/ws_port.asan: the sanitizer build (`make asan`)
    program = System.get_env("WS_PORT_PROGRAM")
    start_opts = if program in [nil, ""], do: [], else: [port_program: Path.expand(program)]

    start_supervised!(%{
      id: name,
      start: {:ws_port_driver, :start_link, [name, start_opts]}
    })

    %{driver: name}
  end

  ## helpers

  defp url(peer, path), do: "ws://127.0.0.1:#{Peer.port(peer)}#{path}"

  defp tagged(path) do
    sep = if String.contains?(path, "?"), do: "&", else: "?"
    "#{path}#{sep}tag=#{System.unique_integer([:positive])}"
  end

  defp connect!(ctx, path, opts \\ %{}) do
    opts = Map.merge(%{driver: ctx.driver, retry: @retry}, opts)

    case :ws_port.connect(url(ctx.evil, path), opts) do
      {:ok, conn} -> conn
      other -> flunk("connect #{path} failed: #{inspect(other)}")
    end
  end

  defp now_ms, do: System.monotonic_time(:millisecond)

  # Waits until the port program has no connection left (every id reported
  # closed); fails with its last figures if that does not happen.
  defp await_no_connections(driver, timeout \\ @wait) do
    deadline = now_ms() + timeout
    do_await_no_connections(driver, deadline)
  end

  defp do_await_no_connections(driver, deadline) do
    {:ok, stats} = :ws_port_driver.program_stats(driver)

    cond do
      stats.connections == 0 and stats.driver_connections == 0 ->
        stats

      now_ms() > deadline ->
        flunk("the port program still has live connections: #{inspect(stats)}")

      true ->
        Process.sleep(20)
        do_await_no_connections(driver, deadline)
    end
  end

  defp handshakes(peer, path),
    do: Enum.count(Peer.lines(peer), &(&1 == "OPEN #{path}"))

  # The server saw exactly one handshake for path, also well after a retry
  # (@retry's delay) would have come.
  defp assert_single_handshake(peer, path) do
    Process.sleep(10 * @retry.delay)

    assert handshakes(peer, path) == 1,
           "a closed connection came back: #{inspect(Peer.lines(peer))}"
  end

  defp refute_owner_messages(conn) do
    receive do
      {tag, ^conn, _} = msg when tag in [:ws_port, :ws_port_down, :ws_port_up] ->
        flunk("message after close: #{inspect(msg)}")

      {:ws_port_passive, ^conn} ->
        flunk("ws_port_passive after close")
    after
      0 -> :ok
    end
  end

  ## a closed connection is never retried

  describe "the server misbehaves after our close frame" do
    for then <- ["rst", "fin", "garbage"] do
      test "then=#{then}: the connection ends, no second handshake", ctx do
        path = tagged("/after_close?then=#{unquote(then)}")
        conn = connect!(ctx, path)
        :ok = :ws_port.close(conn)
        Peer.await_line(ctx.evil, "CLOSE #{path} 1000", @wait)
        Peer.await_line(ctx.evil, "SENT #{path} #{unquote(then)}", @wait)
        await_no_connections(ctx.driver)
        assert_single_handshake(ctx.evil, path)
        refute_owner_messages(conn)
      end
    end

    test "the owner exits (the driver closes with 1001), then a reset", ctx do
      path = tagged("/after_close?then=rst")
      test_pid = self()

      owner =
        spawn(fn ->
          conn = connect!(ctx, path)
          send(test_pid, {:connected, self()})
          receive do: (:exit -> :ok)
          _ = conn
        end)

      assert_receive {:connected, ^owner}, @wait
      ref = Process.monitor(owner)
      send(owner, :exit)
      assert_receive {:DOWN, ^ref, :process, ^owner, _}, @wait
      Peer.await_line(ctx.evil, "CLOSE #{path} 1001", @wait)
      Peer.await_line(ctx.evil, "SENT #{path} rst", @wait)
      await_no_connections(ctx.driver)
      assert_single_handshake(ctx.evil, path)
    end

    test "the port program's close of everything (stdin EOF), then a reset", ctx do
      path = tagged("/after_close?then=rst")
      _conn = connect!(ctx, path)
      %{port: port} = :ws_port_driver.program(ctx.driver)
      {:os_pid, os_pid} = Port.info(port, :os_pid)
      # stopping the driver closes the program's stdin: it closes every
      # connection with 1001 and exits once they are done (at most 2 s)
      :ok = stop_supervised(ctx.driver)
      Peer.await_line(ctx.evil, "CLOSE #{path} 1001", @wait)
      Peer.await_line(ctx.evil, "SENT #{path} rst", @wait)
      await_exit(os_pid)
      assert_single_handshake(ctx.evil, path)
    end
  end

  defp await_exit(os_pid, timeout \\ @wait), do: do_await_exit(os_pid, now_ms() + timeout)

  defp do_await_exit(os_pid, deadline) do
    cond do
      not File.exists?("/proc/#{os_pid}") ->
        :ok

      now_ms() > deadline ->
        flunk("the port program did not exit")

      true ->
        Process.sleep(20)
        do_await_exit(os_pid, deadline)
    end
  end

  ## the close handshake with credit left

  describe "closing with credit left" do
    test "data queued before the server's close reply is read and dropped", ctx do
      path = tagged("/flood_close?first=3&n=2000&size=16384")
      conn = connect!(ctx, path, %{active: 10})

      for _ <- 1..3 do
        assert_receive {:ws_port, ^conn, {:binary, _}}, @wait
      end

      # 7 of the 10 credits are left; 2000 messages (31 MiB) come before
      # the server's close reply
      :ok = :ws_port.close(conn)
      Peer.await_line(ctx.evil, "CLOSE #{path} 1000", @wait)
      done = Peer.await_line(ctx.evil, "CLOSEDONE #{path} ", @wait)
      assert done == "CLOSEDONE #{path} clean"
      await_no_connections(ctx.driver)
      refute_owner_messages(conn)
    end
  end
end
