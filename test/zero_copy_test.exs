Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.ZeroCopyTest do
  @moduledoc """
  The receive path for large messages: over plain TCP the rest of a large
  binary message moves socket -> pipe -> BEAM with splice(2) (see
  c_src/wsp_link.h), and the port program's events come over a unix socket
  (or stdout, `events_socket: false`).

  The server (test/peers/evil_server.py `/sizes`) sends messages of random
  bytes and prints the SHA-256 of each: every message must arrive whole, in
  order, with its opcode, whatever path it took; the port's `msgs_spliced`
  counter says that the zero-copy path was taken. Cases: sizes around every
  threshold (32 KiB splice minimum, 64 KiB read-ahead limit, the 1 MiB pipe),
  text (never spliced: it is UTF-8 checked), many small TCP segments (the
  pipe fills up with small pieces and the port falls back to copying),
  credit of one message at a time, and a server that resets the connection
  in the middle of a large message (nothing of it may be delivered, and the
  next connection splices again). On the portable build (`make
  portable-test`) nothing is spliced and every case must pass the same.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.Peer

  @moduletag timeout: 300_000
  # liveness bound, not a performance threshold
  @wait 30_000

  @sizes ~w(100 65536 65536 32768 32757 40000 65535 200000 t70000 1048000 1048576
            1048600 3000000 10 65536 65536 500000 t100 65536)

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    evil = Peer.start!(:evil)
    on_exit(fn -> Peer.stop(evil) end)

    # WS_PORT_PROGRAM=priv/ws_port.asan: the same cases under the sanitizers
    program =
      case System.get_env("WS_PORT_PROGRAM") do
        p when p in [nil, ""] -> []
        p -> [port_program: Path.expand(p)]
      end

    for {name, socket?} <- [zc_socket: true, zc_stdout: false] do
      {:ok, _} =
        start_supervised(%{
          id: name,
          start: {:ws_port_driver, :start_link, [name, [events_socket: socket?] ++ program]}
        })
    end

    # the portable build (make WSP_PORTABLE=1) has no splice: every message
    # takes the copying path, and must arrive just the same
    exe = Keyword.get(program, :port_program, Path.expand("../priv/ws_port", __DIR__))
    {build, 0} = System.cmd(exe, ["--build"])

    %{evil: evil, base: "ws://127.0.0.1:#{Peer.port(evil)}", splice?: build == "linux\n"}
  end

  # the linux build: `ok` (its splice counts); the portable one: none spliced
  defp spliced_ok?(%{splice?: true}, _spliced, ok), do: ok
  defp spliced_ok?(%{splice?: false}, spliced, _ok), do: spliced == 0

  defp tagged(path) do
    "#{path}&tag=#{System.unique_integer([:positive])}"
  end

  # The MSG lines of one stream: [{index, sha256 hex}], in order.
  defp expected(evil, path, n) do
    for i <- 0..(n - 1) do
      line = Peer.await_line(evil, "MSG #{path} #{i} ", @wait)
      [_, _, _, hex] = String.split(line, " ")
      {i, hex}
    end
  end

  defp receive_messages(conn, n, active) do
    for i <- 0..(n - 1) do
      receive do
        {:ws_port, ^conn, {type, data}} when type in [:text, :binary] ->
          if active == 1 do
            # the credit ran out with this message: nothing more comes
            # until it is given again
            assert_receive {:ws_port_passive, ^conn}, @wait
            refute_received {:ws_port, ^conn, _}
            :ok = :ws_port.setopts(conn, [{:active, 1}])
          end

          {i, type, data}

        {:ws_port_passive, ^conn} ->
          flunk("passive before message #{i}")

        {:ws_port_closed, ^conn, reason} ->
          flunk("closed after #{i} messages: #{inspect(reason)}")

        {:ws_port_down, ^conn, reason, _} ->
          flunk("down after #{i} messages: #{inspect(reason)}")
      after
        @wait -> flunk("message #{i} did not come within #{@wait} ms")
      end
    end
  end

  defp check_stream(ctx, driver, opts) do
    sizes = Keyword.get(opts, :sizes, @sizes)
    active = Keyword.get(opts, :active, true)
    query = "sizes=#{Enum.join(sizes, ",")}" <> Keyword.get(opts, :query, "")
    path = tagged("/sizes?" <> query)

    {:ok, conn} =
      :ws_port.connect(ctx.base <> path, %{driver: driver, retry: false, active: active})

    got = receive_messages(conn, length(sizes), active)
    want = expected(ctx.evil, path, length(sizes))

    for {{i, type, data}, {i, hex}, spec} <- Enum.zip([got, want, sizes]) do
      want_type = if String.starts_with?(spec, "t"), do: :text, else: :binary
      size = spec |> String.trim_leading("t") |> String.to_integer()
      assert {i, type, byte_size(data)} == {i, want_type, size}
      assert Base.encode16(:crypto.hash(:sha256, data), case: :lower) == hex, "message #{i}"
    end

    {:ok, info} = :ws_port.info(conn)
    assert info.msgs_in == length(sizes)
    :ok = :ws_port.close(conn)
    info.msgs_spliced
  end

  # binary messages a splice may carry: a tail >= 32 KiB that fits the pipe
  defp eligible(sizes) do
    Enum.count(sizes, fn s ->
      not String.starts_with?(s, "t") and String.to_integer(s) > 32 * 1024 and
        String.to_integer(s) <= 1024 * 1024
    end)
  end

  for driver <- [:zc_socket, :zc_stdout] do
    describe "#{driver}" do
      test "every size arrives whole and in order; large binary ones are spliced", ctx do
        spliced = check_stream(ctx, unquote(driver), [])
        assert spliced_ok?(ctx, spliced, spliced >= 1 and spliced <= eligible(@sizes))

        assert :ws_port_driver.program(unquote(driver)).events ==
                 if(unquote(driver) == :zc_socket, do: :socket, else: :stdout)
      end

      test "one message of credit at a time", ctx do
        spliced = check_stream(ctx, unquote(driver), active: 1)
        assert spliced_ok?(ctx, spliced, spliced >= 1 and spliced <= eligible(@sizes))
      end

      test "a stream of 64 KiB messages is spliced", ctx do
        sizes = List.duplicate("65536", 50)
        spliced = check_stream(ctx, unquote(driver), sizes: sizes)
        # Most go by splice; how many exactly depends on how fast the BEAM
        # drains the pipe (one still in it when the next comes is copied
        # instead) and on whether the first message came in the read of the
        # upgrade response (8 KiB pieces: its tail is then still in the
        # socket, and spliced too): 49 or 50 on a quiet machine, 48 seen
        # under load.
        assert spliced_ok?(ctx, spliced, spliced >= 25 and spliced <= 50)
      end

      test "many small segments: the pipe fills up and the port copies instead", ctx do
        sizes = ~w(65536 65536 300000 65536 t40000 100 900000 65536)
        spliced = check_stream(ctx, unquote(driver), sizes: sizes, query: "&chunk=700")
        assert spliced_ok?(ctx, spliced, spliced <= eligible(sizes))
      end

      test "a server stalled in the middle of a large message does not stop others splicing",
           ctx do
        path = tagged("/sizes?sizes=65536&stall=300000")

        {:ok, stalled} =
          :ws_port.connect(ctx.base <> path, %{driver: unquote(driver), retry: false})

        [{0, :binary, _}] = receive_messages(stalled, 1, true)
        Peer.await_line(ctx.evil, "SENT #{path} stall", @wait)
        spliced = check_stream(ctx, unquote(driver), sizes: List.duplicate("65536", 20))
        assert spliced_ok?(ctx, spliced, spliced >= 19)
        refute_received {:ws_port, ^stalled, _}
        :ok = :ws_port.close(stalled)
      end

      test "a reset in the middle of a large message delivers nothing of it", ctx do
        path = tagged("/sizes?sizes=65536,65536&cut=300000")
        {:ok, conn} = :ws_port.connect(ctx.base <> path, %{driver: unquote(driver), retry: false})
        got = receive_messages(conn, 2, true)
        want = expected(ctx.evil, path, 2)

        for {{i, :binary, data}, {i, hex}} <- Enum.zip(got, want) do
          assert Base.encode16(:crypto.hash(:sha256, data), case: :lower) == hex
        end

        Peer.await_line(ctx.evil, "SENT #{path} cut", @wait)

        receive do
          {:ws_port_closed, ^conn, reason} ->
            assert reason in [:econnreset, :eof]

          {:ws_port, ^conn, msg} ->
            flunk("part of the cut message arrived: #{inspect(msg, limit: 5)}")
        after
          @wait -> flunk("no closed event after the reset")
        end

        refute_received {:ws_port, ^conn, _}
        # the pipe was emptied: the next stream splices again
        spliced = check_stream(ctx, unquote(driver), sizes: List.duplicate("65536", 10))
        assert spliced_ok?(ctx, spliced, spliced >= 9)
      end
    end
  end
end
