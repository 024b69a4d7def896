Code.require_file("support/peer.exs", __DIR__)

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

  alias WsPort.Test.{Certs, Peer}

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

  defp certs! do
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)
    certs
  end

  defp start!(kind, opts \\ []) do
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
end
