Code.require_file("support/peer.exs", __DIR__)
Code.require_file("support/test_clients.exs", __DIR__)

defmodule WsPort.RetryPolicyTest do
  @moduledoc """
  Which failures are retried (issue 11), end to end through the port program:

    * a reset or EOF during the TLS handshake is a network failure
      (`econnreset` / `eof`, retried), a certificate failure stays `tls`
      (final);
    * server closes: by default 1000 and codes other than 1001, 1011-1014
      and "no code" (1005) are final; `retry_on` names codes either way;
      the long-lived layers (`ws_port_client`) reconnect after any server
      close but the ones caused by our own protocol errors.

  Servers: test/peers/ws_server.py (TLS with certificates made at test time),
  test/peers/evil_server.py (`/close_frame?code=C`), behind
  test/peers/fault_proxy.py where the network must fail. Everything runs on
  127.0.0.1.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.{Certs, Peer, ReportClient}

  @moduletag timeout: 120_000
  # liveness bound for something that must happen
  @wait 20_000
  @retry %{delay: 50, max_delay: 50, jitter: 0}

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    evil = Peer.start!(:evil)
    on_exit(fn -> Peer.stop(evil) end)
    %{evil: evil}
  end

  ## helpers

  defp tagged(path) do
    sep = if String.contains?(path, "?"), do: "&", else: "?"
    "#{path}#{sep}tag=#{System.unique_integer([:positive])}"
  end

  defp next_event(conn, timeout \\ @wait) do
    receive do
      {:ws_port_down, ^conn, reason, info} -> {:down, reason, info}
      {:ws_port_up, ^conn, info} -> {:up, info}
      {:ws_port_closed, ^conn, reason} -> {:closed, reason}
    after
      timeout -> :timeout
    end
  end

  defp count_lines(peer, line), do: Enum.count(Peer.lines(peer), &(&1 == line))

  # The count of `line` once it reached n, or when @wait is over.
  defp await_count(peer, line, n, deadline \\ nil) do
    deadline = deadline || System.monotonic_time(:millisecond) + @wait
    count = count_lines(peer, line)

    if count >= n or System.monotonic_time(:millisecond) > deadline do
      count
    else
      Process.sleep(20)
      await_count(peer, line, n, deadline)
    end
  end

  defp certs! do
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)
    certs
  end

  defp start!(kind, opts) do
    peer = Peer.start!(kind, opts)
    on_exit(fn -> Peer.stop(peer) end)
    peer
  end

  ## TLS handshake failures

  describe "the network fails during the TLS handshake" do
    test "a reset is econnreset and an EOF is eof, both retried like on ws://" do
      certs = certs!()
      server = start!(:python, tls: {certs.server.cert, certs.server.key})
      proxy = Peer.start_proxy!(Peer.port(server))
      on_exit(fn -> Peer.stop(proxy) end)
      # the proxy accepts and drops every byte: the ClientHello gets no answer
      Peer.control(proxy, "mode blackhole")

      {:ok, conn} =
        :ws_port.connect("wss://127.0.0.1:#{Peer.port(proxy)}/echo", %{
          await: false,
          tls: %{cacertfile: certs.ca.cert},
          retry: @retry
        })

      Peer.await_line(proxy, "ACCEPT 1 ", @wait)
      Peer.control(proxy, "reset")
      assert {:down, :econnreset, %{attempt: 1}} = next_event(conn)

      Peer.await_line(proxy, "ACCEPT 2 ", @wait)
      Peer.control(proxy, "fin")
      assert {:down, :eof, %{attempt: 2}} = next_event(conn)

      # and it comes back once the network lets it
      Peer.control(proxy, "mode pass")
      assert {:up, _} = next_event(conn)
      :ok = :ws_port.close(conn)
    end

    test "an awaited connect reports the reset as econnreset" do
      certs = certs!()
      server = start!(:python, tls: {certs.server.cert, certs.server.key})
      proxy = Peer.start_proxy!(Peer.port(server))
      on_exit(fn -> Peer.stop(proxy) end)
      Peer.control(proxy, "mode blackhole")
      test_pid = self()

      spawn_link(fn ->
        r =
          :ws_port.connect("wss://127.0.0.1:#{Peer.port(proxy)}/echo", %{
            tls: %{cacertfile: certs.ca.cert}
          })

        send(test_pid, {:connect_result, r})
      end)

      Peer.await_line(proxy, "ACCEPT 1 ", @wait)
      Peer.control(proxy, "reset")
      assert_receive {:connect_result, {:error, :econnreset}}, @wait
    end

    test "a certificate that fails verification stays tls and final" do
      certs = certs!()
      server = start!(:python, tls: {certs.untrusted.cert, certs.untrusted.key})

      {:ok, conn} =
        :ws_port.connect("wss://127.0.0.1:#{Peer.port(server)}/echo", %{
          await: false,
          tls: %{cacertfile: certs.ca.cert},
          retry: @retry
        })

      assert {:closed, {:tls, detail}} = next_event(conn)
      assert detail =~ "certificate verify failed"
      Process.sleep(10 * @retry.delay)
      assert count_lines(server, "SNI -") + count_lines(server, "SNI 127.0.0.1") <= 1
      assert next_event(conn, 0) == :timeout
    end
  end

  ## server closes, by close code

  # A server that closes every connection right after the handshake with
  # `code` ("none": a close frame without a code). Returns the events of
  # the connection until `stop?` says so, and the path.
  defp closing_server(ctx, code, opts) do
    path = tagged("/close_frame?code=#{code}&reason=bye")
    url = "ws://127.0.0.1:#{Peer.port(ctx.evil)}#{path}"
    {:ok, conn} = :ws_port.connect(url, Map.merge(%{await: false, retry: @retry}, opts))
    {conn, path}
  end

  defp assert_final(ctx, code, reason_code, opts \\ %{}) do
    {conn, path} = closing_server(ctx, code, opts)
    assert {:up, _} = next_event(conn)
    assert {:closed, {:remote, ^reason_code, _}} = next_event(conn)
    # no second handshake, also after the retry delay
    Process.sleep(10 * @retry.delay)
    assert count_lines(ctx.evil, "OPEN #{path}") == 1
  end

  defp assert_retried(ctx, code, reason_code, opts \\ %{}) do
    {conn, path} = closing_server(ctx, code, opts)
    assert {:up, _} = next_event(conn)
    assert {:down, {:remote, ^reason_code, _}, %{attempt: 1}} = next_event(conn)
    assert {:up, _} = next_event(conn)
    :ok = :ws_port.close(conn)
    # the server saw the second handshake (its line may come a bit later)
    assert await_count(ctx.evil, "OPEN #{path}", 2) >= 2
  end

  describe "connect/2's default" do
    test "1000 (normal closure) is final", ctx do
      assert_final(ctx, 1000, 1000)
    end

    test "codes about the client's frames and others are final", ctx do
      for code <- [1002, 1003, 1007, 1008, 1009, 3000, 4000] do
        assert_final(ctx, code, code)
      end
    end

    test "1001 (going away) and 1012 (service restart) are retried", ctx do
      assert_retried(ctx, 1001, 1001)
      assert_retried(ctx, 1012, 1012)
    end

    test "1011, 1013 and 1014 are retried", ctx do
      for code <- [1011, 1013, 1014], do: assert_retried(ctx, code, code)
    end

    test "a close frame without a code (1005) is retried", ctx do
      assert_retried(ctx, "none", 1005)
    end

    test "retry_on: :default is the same", ctx do
      assert_final(ctx, 1000, 1000, %{retry_on: :default})
      assert_retried(ctx, 1001, 1001, %{retry_on: :default})
    end
  end

  describe "retry_on names close codes" do
    test "{:remote_close, codes}: those are retried, the others final", ctx do
      opts = %{retry_on: [:network, {:remote_close, [1000, 4000]}]}
      assert_retried(ctx, 1000, 1000, opts)
      assert_retried(ctx, 4000, 4000, opts)
      assert_final(ctx, 1001, 1001, opts)
    end

    test "{:remote_close, {:except, codes}}: all but those are retried", ctx do
      opts = %{retry_on: [{:remote_close, {:except, [1000]}}]}
      assert_final(ctx, 1000, 1000, opts)
      assert_retried(ctx, 4000, 4000, opts)
      assert_retried(ctx, "none", 1005, opts)
    end

    test ":remote_close: every server close is retried", ctx do
      assert_retried(ctx, 1000, 1000, %{retry_on: [:remote_close]})
      assert_retried(ctx, 1002, 1002, %{retry_on: [:remote_close]})
    end

    test "no remote_close entry: no server close is retried", ctx do
      assert_final(ctx, 1001, 1001, %{retry_on: [:network, :timeout]})
    end

    test ":stay_connected: all but the answers to our own frames", ctx do
      assert_retried(ctx, 1000, 1000, %{retry_on: :stay_connected})
      assert_retried(ctx, 4000, 4000, %{retry_on: :stay_connected})

      for code <- :ws_port_retry.our_close_codes() do
        assert_final(ctx, code, code, %{retry_on: :stay_connected})
      end
    end

    test "bad values are refused, naming the bad element", ctx do
      url = "ws://127.0.0.1:#{Peer.port(ctx.evil)}/echo"

      for {retry_on, error} <- [
            {[:network, :nope], {:bad_option, :retry_on, :nope}},
            {:always, {:bad_option, :retry_on, :always}},
            {[{:remote_close, [1000, 999]}], {:bad_option, {:retry_on, :remote_close}, 999}},
            {[{:remote_close, {:except, [:x]}}], {:bad_option, {:retry_on, :remote_close}, :x}},
            {[{:remote_close, 1000}], {:bad_option, {:retry_on, :remote_close}, 1000}},
            {[:remote_close, {:remote_close, [1000]}],
             {:bad_option, :retry_on, {:remote_close, [1000]}}},
            {[:network | :timeout], {:bad_option, :retry_on, :timeout}}
          ] do
        assert {:error, ^error} = :ws_port.connect(url, %{retry_on: retry_on}),
               "retry_on: #{inspect(retry_on)}"
      end
    end
  end

  describe "the long-lived layers stay connected" do
    # a client that ends logs its exit reason
    @describetag :capture_log

    defp start_client(url, opts \\ []) do
      opts = Keyword.merge([init_arg: [test: self()], retry: @retry], opts)
      {:ok, pid} = WsPort.Client.start(ReportClient, url, opts)
      on_exit(fn -> WsPort.Client.close(pid) end)
      pid
    end

    test "WsPort.Client reconnects after a close with 1000", ctx do
      path = tagged("/close_frame?code=1000&reason=rotate")
      pid = start_client("ws://127.0.0.1:#{Peer.port(ctx.evil)}#{path}")
      assert_receive {:client, :connect, ^pid, _}, @wait

      assert_receive {:client, :disconnect, ^pid,
                      %{reason: {:remote, 1000, "rotate"}, final: false}},
                     @wait

      assert_receive {:client, :connect, ^pid, %{reconnects: 1}}, @wait
      assert Process.alive?(pid)
    end

    test "WsPort.Client ends after a close answering its own frames (1002)", ctx do
      path = tagged("/close_frame?code=1002&reason=bad")
      pid = start_client("ws://127.0.0.1:#{Peer.port(ctx.evil)}#{path}")
      ref = Process.monitor(pid)
      assert_receive {:client, :connect, ^pid, _}, @wait

      assert_receive {:client, :disconnect, ^pid, %{reason: {:remote, 1002, "bad"}, final: true}},
                     @wait

      assert_receive {:DOWN, ^ref, :process, ^pid, {:closed, {:remote, 1002, "bad"}}}, @wait
      assert count_lines(ctx.evil, "OPEN #{path}") == 1
    end

    test "a client's own retry_on wins", ctx do
      path = tagged("/close_frame?code=1000")
      pid = start_client("ws://127.0.0.1:#{Peer.port(ctx.evil)}#{path}", retry_on: :default)
      ref = Process.monitor(pid)

      assert_receive {:client, :disconnect, ^pid, %{reason: {:remote, 1000, _}, final: true}},
                     @wait

      assert_receive {:DOWN, ^ref, :process, ^pid, {:closed, {:remote, 1000, _}}}, @wait
    end
  end
end
