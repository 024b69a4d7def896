Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.E2ETest do
  @moduledoc """
  End-to-end tests: the real priv/ws_port binary, driven through the
  `:ws_port` API, against real servers on 127.0.0.1 (python3-websockets and
  node `ws`, see test/peers/), over ws and over wss with certificates made by
  test/peers/make_certs.sh at test time.

  Servers print what they saw on stdout (`OPEN`, `CLOSED <path> <code>
  <reason>`, `SENT`, `SNI`); `WsPort.Test.Peer` collects those lines so tests
  can check the server's side of the conversation. Each connection uses a
  unique `tag` query parameter to find its own lines.
  """
  use ExUnit.Case, async: false
  import Bitwise

  alias WsPort.Test.{Certs, JSON, Peer}

  @moduletag timeout: 300_000
  # How long to wait for something that must happen. A liveness bound, not a
  # performance threshold: on a healthy machine everything arrives far sooner.
  @wait 20_000
  # How long to watch for something that must NOT happen (after the server
  # has confirmed it sent everything).
  @quiet 300

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)

    peers =
      for kind <- [:python, :node], scheme <- [:ws, :wss], into: %{} do
        opts = if scheme == :wss, do: [tls: {certs.server.cert, certs.server.key}], else: []
        pid = Peer.start!(kind, opts)
        on_exit(fn -> Peer.stop(pid) end)
        {{kind, scheme}, pid}
      end

    %{certs: certs, peers: peers}
  end

  setup ctx do
    case ctx[:peer] do
      nil ->
        :ok

      {kind, scheme} ->
        peer = Map.fetch!(ctx.peers, {kind, scheme})
        opts = if scheme == :wss, do: %{tls: %{cacertfile: ctx.certs.ca.cert}}, else: %{}
        %{server: peer, base: "#{scheme}://127.0.0.1:#{Peer.port(peer)}", base_opts: opts}
    end
  end

  ## helpers

  defp tagged(path) do
    sep = if String.contains?(path, "?"), do: "&", else: "?"
    "#{path}#{sep}tag=#{System.unique_integer([:positive])}"
  end

  defp connect(ctx, path, opts \\ %{}) do
    :ws_port.connect(ctx.base <> path, merge_opts(ctx.base_opts, opts))
  end

  defp connect!(ctx, path, opts \\ %{}) do
    case connect(ctx, path, opts) do
      {:ok, conn} -> conn
      other -> flunk("connect #{ctx.base}#{path} failed: #{inspect(other)}")
    end
  end

  defp merge_opts(a, b) do
    Map.merge(a, Map.new(b), fn
      :tls, x, y -> Map.merge(x, y)
      _, _, y -> y
    end)
  end

  defp recv!(conn, timeout \\ @wait) do
    receive do
      {:ws_port, ^conn, msg} -> msg
      {:ws_port_closed, ^conn, reason} -> flunk("connection closed instead: #{inspect(reason)}")
    after
      timeout -> flunk("no message within #{timeout} ms")
    end
  end

  defp echo!(conn, {type, payload}) do
    :ok = :ws_port.send(conn, {type, payload})
    recv!(conn)
  end

  defp assert_same_payload(got, want) do
    assert byte_size(got) == byte_size(want)
    assert :crypto.hash(:sha256, got) == :crypto.hash(:sha256, want), "payload differs"
  end

  # Exactly `bytes` bytes of valid UTF-8 with 1-, 2-, 3- and 4-byte characters.
  defp letters_text(bytes) do
    unit = "héllo wörld ✓ 𝄞 — "
    full = :binary.copy(unit, div(bytes, byte_size(unit)))
    full <> :binary.copy("a", bytes - byte_size(full))
  end

  defp close_quietly(conn) do
    _ = :ws_port.close(conn)
    :ok
  end

  defp flush_passive(conn) do
    receive do
      {:ws_port_passive, ^conn} -> flush_passive(conn)
    after
      0 -> :ok
    end
  end

  defp free_port do
    {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(l)
    :ok = :gen_tcp.close(l)
    port
  end

  ## the same behaviour against every server, over ws and wss

  for kind <- [:python, :node], scheme <- [:ws, :wss] do
    describe "#{kind} server over #{scheme}" do
      @describetag peer: {kind, scheme}

      test "echoes text, including multi-byte UTF-8", ctx do
        conn = connect!(ctx, tagged("/echo"))

        for msg <- [
              "hello",
              "héllo wörld",
              "✓ 𝄞 日本語",
              String.duplicate("x", 125),
              String.duplicate("y", 126),
              String.duplicate("z", 65_536)
            ] do
          assert echo!(conn, {:text, msg}) == {:text, msg}
        end

        # iodata is accepted and sent as one message
        assert echo!(conn, {:text, ["io", ?d, ["at", "a"]]}) == {:text, "iodata"}
        close_quietly(conn)
      end

      test "echoes binary with every byte value", ctx do
        conn = connect!(ctx, tagged("/echo"))
        all = :binary.list_to_bin(Enum.to_list(0..255))
        assert echo!(conn, {:binary, all}) == {:binary, all}
        assert echo!(conn, {:binary, <<0>>}) == {:binary, <<0>>}
        rnd = :crypto.strong_rand_bytes(70_000)
        assert echo!(conn, {:binary, rnd}) == {:binary, rnd}
        close_quietly(conn)
      end

      test "echoes zero-byte text and binary messages", ctx do
        conn = connect!(ctx, tagged("/echo"))
        assert echo!(conn, {:text, ""}) == {:text, ""}
        assert echo!(conn, {:binary, ""}) == {:binary, ""}
        assert echo!(conn, {:text, "after"}) == {:text, "after"}
        close_quietly(conn)
      end

      test "echoes 1 MiB text and binary messages", ctx do
        conn = connect!(ctx, tagged("/echo"))
        bin = :crypto.strong_rand_bytes(1 <<< 20)
        assert {:binary, got} = echo!(conn, {:binary, bin})
        assert_same_payload(got, bin)
        text = letters_text(1 <<< 20)
        assert byte_size(text) == 1 <<< 20
        assert {:text, got} = echo!(conn, {:text, text})
        assert_same_payload(got, text)
        close_quietly(conn)
      end

      test "echoes 16 MiB binary and text messages", ctx do
        conn = connect!(ctx, tagged("/echo"), %{max_message_size: 64 <<< 20})
        bin = :crypto.strong_rand_bytes(16 <<< 20)
        assert {:binary, got} = echo!(conn, {:binary, bin})
        assert_same_payload(got, bin)
        text = letters_text(16 <<< 20)
        assert {:text, got} = echo!(conn, {:text, text})
        assert_same_payload(got, text)
        close_quietly(conn)
      end

      test "keeps 2000 pipelined messages in order", ctx do
        conn = connect!(ctx, tagged("/echo"))
        for i <- 1..2000, do: :ok = :ws_port.send(conn, {:text, Integer.to_string(i)})
        got = for _ <- 1..2000, do: recv!(conn)
        assert got == for(i <- 1..2000, do: {:text, Integer.to_string(i)})
        close_quietly(conn)
      end

      test "reassembles messages the server sent as fragments", ctx do
        conn = connect!(ctx, tagged("/fragmented"))
        assert recv!(conn) == {:text, "Hello, fragmented world"}

        assert recv!(conn) ==
                 {:binary, :binary.copy(:binary.list_to_bin(Enum.to_list(0..255)), 4)}

        # and the connection still works afterwards
        assert echo!(conn, {:text, "still here"}) == {:text, "still here"}
        close_quietly(conn)
      end

      test "negotiates the subprotocol the server prefers", ctx do
        # await: false makes the owner get {:ws_port_up, conn, info}, whose
        # info carries the agreed protocol.
        for {offer, agreed, echoed} <- [
              {["chat.v1", "chat.v2"], "chat.v2", "chat.v2"},
              {["x.unknown", "chat.v1"], "chat.v1", "chat.v1"},
              {[], :undefined, ""}
            ] do
          conn = connect!(ctx, tagged("/subprotocol"), %{protocols: offer, await: false})

          assert_receive {:ws_port_up, ^conn,
                          %{status: 101, protocol: ^agreed, headers: headers}},
                         @wait

          assert is_list(headers)
          assert recv!(conn) == {:text, echoed}
          close_quietly(conn)
        end
      end

      test "with await: false a refused upgrade arrives as ws_port_closed", ctx do
        {:ok, conn} = connect(ctx, tagged("/status?code=401"), %{await: false})
        assert_receive {:ws_port_closed, ^conn, {:http_status, 401, headers}}, @wait
        assert Enum.any?(headers, fn {name, _} -> String.downcase(name) == "www-authenticate" end)
        refute_received {:ws_port_up, ^conn, _}
      end

      test "sends custom headers with the upgrade request", ctx do
        headers = [{"X-Ws-Port-Test", "hello there"}, {"Authorization", "Bearer t0k3n"}]
        conn = connect!(ctx, tagged("/headers"), %{headers: headers})
        assert {:text, json} = recv!(conn)
        seen = JSON.decode!(json)
        assert seen["x-ws-port-test"] == "hello there"
        assert seen["authorization"] == "Bearer t0k3n"
        assert seen["sec-websocket-version"] == "13"
        assert String.downcase(seen["upgrade"]) == "websocket"
        assert seen["host"] == "127.0.0.1:#{Peer.port(ctx.server)}"
        assert {:ok, key} = Base.decode64(seen["sec-websocket-key"])
        assert byte_size(key) == 16
        close_quietly(conn)
      end

      # the token reaches the server, and never shows in clear in the state
      # of the driver or of a ws_port_client that keeps it to reconnect
      test "header values are sent but kept out of process state", ctx do
        token = "Bearer hidden-#{System.unique_integer([:positive])}"
        headers = [{"Authorization", token}, {"X-From-Fun", fn -> "fun value" end}]

        hidden? = fn term ->
          printed = inspect(term, limit: :infinity, printable_limit: :infinity)
          erl = IO.iodata_to_binary(:io_lib.format(~c"~p", [term]))
          not (printed =~ token or erl =~ token)
        end

        # the check sees the token in the options as given
        refute hidden?.(headers)
        conn = connect!(ctx, tagged("/headers"), %{headers: headers})
        assert {:text, json} = recv!(conn)
        seen = JSON.decode!(json)
        assert seen["authorization"] == token
        assert seen["x-from-fun"] == "fun value"
        {:ws_port, driver, _} = conn
        driver_pid = if is_pid(driver), do: driver, else: Process.whereis(driver)
        assert hidden?.(:sys.get_state(driver_pid))
        close_quietly(conn)

        opts = merge_opts(ctx.base_opts, %{headers: headers, init_arg: self()})

        {:ok, client} =
          :ws_port_client.start(:ws_port_client_forward, ctx.base <> tagged("/headers"), opts)

        assert_receive {:ws_port_client_up, ^client, _}, @wait
        assert_receive {:ws_port_client, ^client, {:text, json2}}, @wait
        assert JSON.decode!(json2)["authorization"] == token
        assert hidden?.(:sys.get_state(client))
        :ok = :ws_port_client.close(client)
      end

      test "delivers the server's close code and reason", ctx do
        path = tagged("/close?code=4001&reason=bye")
        conn = connect!(ctx, path, %{retry: false})
        assert_receive {:ws_port_closed, ^conn, {:remote, 4001, "bye"}}, @wait
        # the client answered the close frame, so the server saw a clean close
        assert {4001, "bye"} = Peer.await_closed(ctx.server, path)
        refute_received {:ws_port, ^conn, _}
      end

      test "close/3 sends our code and reason; nothing more is delivered", ctx do
        path = tagged("/echo")
        conn = connect!(ctx, path)
        assert echo!(conn, {:text, "x"}) == {:text, "x"}
        :ok = :ws_port.close(conn, 4000, "done here")
        assert {4000, "done here"} = Peer.await_closed(ctx.server, path)
        assert {:error, :closed} = :ws_port.send(conn, {:text, "too late"})
        # close/1,3 documents that the owner gets no ws_port_closed
        refute_receive {:ws_port_closed, ^conn, _}, @quiet
        assert :ok = :ws_port.close(conn)
      end

      test "close/3 refuses codes a client may not send and reasons over 123 bytes", ctx do
        conn = connect!(ctx, tagged("/echo"))

        for code <- [999, 1004, 1005, 1006, 1015, 5000] do
          assert_raise ArgumentError, fn -> :ws_port.close(conn, code, "") end
        end

        assert_raise ArgumentError, fn -> :ws_port.close(conn, 1000, :binary.copy("r", 124)) end
        # none of that closed anything
        assert echo!(conn, {:text, "open"}) == {:text, "open"}
        :ok = :ws_port.close(conn, 1000, :binary.copy("r", 123))
      end

      test "close/1 closes with 1000", ctx do
        path = tagged("/echo")
        conn = connect!(ctx, path)
        assert echo!(conn, {:text, "x"}) == {:text, "x"}
        :ok = :ws_port.close(conn)
        assert {1000, _} = Peer.await_closed(ctx.server, path)
      end

      test "reports a refused upgrade with the HTTP status and headers", ctx do
        assert {:error, {:http_status, 401, headers}} = connect(ctx, tagged("/status?code=401"))
        assert is_list(headers)

        assert Enum.any?(headers, fn {name, value} ->
                 String.downcase(name) == "www-authenticate" and value =~ "Basic"
               end),
               "WWW-Authenticate missing from #{inspect(headers)}"

        assert {:error, {:http_status, 403, _}} = connect(ctx, tagged("/status?code=403"))
      end

      test "a message over max_message_size fails the connection with 1009", ctx do
        path = tagged("/send?n=1&size=2048&type=binary")
        conn = connect!(ctx, path, %{max_message_size: 1024, retry: false})
        assert_receive {:ws_port_closed, ^conn, {:protocol_error, 1009, _}}, @wait
        refute_received {:ws_port, ^conn, _}
        assert {1009, _} = Peer.await_closed(ctx.server, path)
      end

      test "max_message_size counts the whole fragmented message", ctx do
        # /fragmented sends 23 bytes of text, then 1024 bytes of binary as 4
        # fragments of 256: every fragment fits, the message does not.
        path = tagged("/fragmented")
        conn = connect!(ctx, path, %{max_message_size: 1000, retry: false})
        assert recv!(conn) == {:text, "Hello, fragmented world"}
        assert_receive {:ws_port_closed, ^conn, {:protocol_error, 1009, _}}, @wait
        refute_received {:ws_port, ^conn, _}
        assert {1009, _} = Peer.await_closed(ctx.server, path)
      end

      test "a ping is answered by the server's pong, reported with an RTT", ctx do
        conn = connect!(ctx, tagged("/echo"))
        :ok = :ws_port.send(conn, {:ping, "are you there"})
        assert_receive {:ws_port_pong, ^conn, rtt}, @wait
        assert is_integer(rtt) and rtt >= 0
        # pings do not disturb data
        assert echo!(conn, {:text, "after ping"}) == {:text, "after ping"}
        close_quietly(conn)
      end

      test "{active, n} delivers n messages, then passive, then waits for setopts", ctx do
        path = tagged("/send?n=10&size=5&type=text")
        conn = connect!(ctx, path, %{active: 3})
        Peer.await_line(ctx.server, "SENT #{path}")
        letters = for c <- ?a..?j, do: {:text, :binary.copy(<<c>>, 5)}
        {first, rest} = Enum.split(letters, 3)

        assert Enum.map(first, fn _ -> recv!(conn) end) == first
        assert_receive {:ws_port_passive, ^conn}, @wait
        refute_receive {:ws_port, ^conn, _}, @quiet

        :ok = :ws_port.setopts(conn, active: 2)
        {second, rest} = Enum.split(rest, 2)
        assert Enum.map(second, fn _ -> recv!(conn) end) == second
        assert_receive {:ws_port_passive, ^conn}, @wait
        refute_receive {:ws_port, ^conn, _}, @quiet

        :ok = :ws_port.setopts(conn, active: true)
        assert Enum.map(rest, fn _ -> recv!(conn) end) == rest
        refute_receive {:ws_port_passive, ^conn}, @quiet
        close_quietly(conn)
      end

      test "active: :once delivers one message per setopts", ctx do
        path = tagged("/send?n=3&size=4&type=binary")
        conn = connect!(ctx, path, %{active: :once})
        Peer.await_line(ctx.server, "SENT #{path}")

        assert recv!(conn) == {:binary, <<0, 0, 0, 0>>}
        refute_receive {:ws_port, ^conn, _}, @quiet
        :ok = :ws_port.setopts(conn, active: :once)
        assert recv!(conn) == {:binary, <<1, 1, 1, 1>>}
        refute_receive {:ws_port, ^conn, _}, @quiet
        :ok = :ws_port.setopts(conn, active: :once)
        assert recv!(conn) == {:binary, <<2, 2, 2, 2>>}
        flush_passive(conn)
        close_quietly(conn)
      end

      test "credit of one, renewed 300 times, then :once over 4 MiB messages: all in order",
           ctx do
        # Each pause happens with data already read (or buffered inside TLS)
        # behind it: resuming must deliver it without new socket traffic,
        # since the server has already sent everything.
        path = tagged("/send?n=300&size=1000&type=binary")
        conn = connect!(ctx, path, %{active: 1})
        Peer.await_line(ctx.server, "SENT #{path}")

        for i <- 0..299 do
          assert recv!(conn) == {:binary, :binary.copy(<<rem(i, 256)>>, 1000)}, "message #{i}"
          assert_receive {:ws_port_passive, ^conn}, @wait
          :ok = :ws_port.setopts(conn, active: 1)
        end

        close_quietly(conn)

        # (16 MiB do not fit in the socket buffers: the server cannot finish
        # sending while we hold the credit at 0, which is the point of credit)
        size = 4 <<< 20
        path = tagged("/send?n=4&size=#{size}&type=binary")
        conn = connect!(ctx, path, %{active: :once})

        for i <- 0..3 do
          assert {:binary, got} = recv!(conn)
          assert_same_payload(got, :binary.copy(<<i>>, size))
          flush_passive(conn)
          :ok = :ws_port.setopts(conn, active: :once)
        end

        Peer.await_line(ctx.server, "SENT #{path}")
        close_quietly(conn)
      end

      test "an oversized ping is refused and the connection carries on", ctx do
        conn = connect!(ctx, tagged("/echo"))
        # refused at the call (RFC 6455 5.5: 125 bytes at most)
        assert {:error, {:too_large, 126, 125}} =
                 :ws_port.send(conn, {:ping, :binary.copy("p", 126)})

        # the port program refuses it as well, when a command carries it
        {:ws_port, driver, id} = conn
        %{port: port} = :ws_port_driver.program(driver)
        Port.command(port, :ws_port_proto.send_cmd(id, :ping, :binary.copy("p", 126)))
        assert_receive {:ws_port_error, ^conn, {:badarg, detail}}, @wait
        assert detail =~ "at most 125 bytes"
        assert echo!(conn, {:text, "still open"}) == {:text, "still open"}
        close_quietly(conn)
      end

      test "active: false delivers nothing until setopts", ctx do
        path = tagged("/send?n=2&size=3&type=text")
        conn = connect!(ctx, path, %{active: false})
        Peer.await_line(ctx.server, "SENT #{path}")
        refute_receive {:ws_port, ^conn, _}, @quiet
        :ok = :ws_port.setopts(conn, active: true)
        assert recv!(conn) == {:text, "aaa"}
        assert recv!(conn) == {:text, "bbb"}
        close_quietly(conn)
      end

      test "the owner's death closes the connection and the server sees a close frame", ctx do
        path = tagged("/echo")
        parent = self()

        {owner, ref} =
          spawn_monitor(fn ->
            {:ok, conn} = :ws_port.connect(ctx.base <> path, ctx.base_opts)
            :ok = :ws_port.send(conn, {:text, "owned"})

            receive do
              {:ws_port, ^conn, {:text, "owned"}} -> send(parent, {:ready, self()})
            end

            Process.sleep(:infinity)
          end)

        assert_receive {:ready, ^owner}, @wait
        Process.exit(owner, :kill)
        assert_receive {:DOWN, ^ref, :process, ^owner, :killed}
        {code, _} = Peer.await_closed(ctx.server, path)
        assert code in [1000, 1001], "server saw close code #{code} (1006 = no close frame)"
      end

      test "controlling_process/2 hands delivery to another process", ctx do
        conn = connect!(ctx, tagged("/echo"))
        parent = self()

        new_owner =
          spawn_link(fn ->
            receive do
              :go ->
                receive do
                  {:ws_port, ^conn, msg} -> send(parent, {:new_owner_got, msg})
                end
            end
          end)

        :ok = :ws_port.controlling_process(conn, new_owner)
        send(new_owner, :go)
        :ok = :ws_port.send(conn, {:text, "to the new owner"})
        assert_receive {:new_owner_got, {:text, "to the new owner"}}, @wait
        refute_received {:ws_port, ^conn, _}
        close_quietly(conn)
      end

      test "200 concurrent connections through one driver each echo their own message", ctx do
        driver =
          start_supervised!(%{id: :dedicated_driver, start: {:ws_port_driver, :start_link, []}})

        opts = Map.put(ctx.base_opts, :driver, driver)
        paths = for i <- 1..200, do: {i, tagged("/echo")}

        results =
          paths
          |> Enum.map(fn {i, path} ->
            Task.async(fn ->
              {:ok, conn} = :ws_port.connect(ctx.base <> path, opts)
              msg = "conn #{i} " <> Base.encode16(:crypto.strong_rand_bytes(8))
              :ok = :ws_port.send(conn, {:text, msg})

              got =
                receive do
                  {:ws_port, ^conn, m} -> m
                  {:ws_port_closed, ^conn, r} -> {:closed, r}
                after
                  @wait -> :timeout
                end

              :ok = :ws_port.close(conn)
              {got, {:text, msg}}
            end)
          end)
          |> Task.await_many(120_000)

        for {got, want} <- results, do: assert(got == want)

        for {_, path} <- paths do
          assert {1000, _} = Peer.await_closed(ctx.server, path)
        end
      end

      test "a killed port program is restarted and the connection reopened", ctx do
        driver =
          start_supervised!(%{id: :restart_driver, start: {:ws_port_driver, :start_link, []}})

        path = tagged("/echo")
        conn = connect!(ctx, path, %{driver: driver})
        assert echo!(conn, {:text, "before"}) == {:text, "before"}

        %{os_pid: os_pid} = :ws_port_driver.program(driver)
        {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(os_pid)])

        assert_receive {:ws_port_down, ^conn, {:port_exit, _},
                        %{attempt: 1, delay_ms: 0, unsent_bytes: 0}},
                       @wait

        assert_receive {:ws_port_up, ^conn, %{status: 101}}, @wait
        # the server saw the old connection drop (no close frame) and a new one
        assert {1006, _} = Peer.await_closed(ctx.server, path)
        assert echo!(conn, {:text, "after"}) == {:text, "after"}
        close_quietly(conn)
      end
    end
  end

  ## TLS

  describe "TLS" do
    setup ctx do
      start = fn cert_name, extra ->
        c = Map.fetch!(ctx.certs, cert_name)
        pid = Peer.start!(:python, [tls: {c.cert, c.key}] ++ extra)
        on_exit(fn -> Peer.stop(pid) end)
        pid
      end

      %{start_tls_peer: start}
    end

    test "an untrusted (self-signed) server certificate is rejected", ctx do
      peer = ctx.start_tls_peer.(:untrusted, [])
      url = "wss://127.0.0.1:#{Peer.port(peer)}/echo"

      assert {:error, {:tls, detail}} =
               :ws_port.connect(url, %{tls: %{cacertfile: ctx.certs.ca.cert}})

      assert detail =~ ~r/verif/i
      # the system CA store does not trust it either
      assert {:error, {:tls, detail}} = :ws_port.connect(url, %{})
      assert detail =~ ~r/verif/i
    end

    test "a certificate from our CA is rejected with the system CA store", ctx do
      peer = ctx.start_tls_peer.(:server, [])
      url = "wss://127.0.0.1:#{Peer.port(peer)}/echo"
      assert {:error, {:tls, detail}} = :ws_port.connect(url, %{})
      assert detail =~ ~r/verif/i
    end

    test "a certificate for another name is rejected, by IP and by host name", ctx do
      peer = ctx.start_tls_peer.(:wrongname, [])
      opts = %{tls: %{cacertfile: ctx.certs.ca.cert}}

      assert {:error, {:tls, detail}} =
               :ws_port.connect("wss://127.0.0.1:#{Peer.port(peer)}/echo", opts)

      assert detail =~ ~r/mismatch/i

      assert {:error, {:tls, detail}} =
               :ws_port.connect("wss://localhost:#{Peer.port(peer)}/echo", opts)

      assert detail =~ ~r/mismatch/i
    end

    test "a certificate without subjectAltName is refused: its CN is never checked", ctx do
      # CN=localhost, signed by our CA, no SAN: browsers refuse it, so do we
      peer = ctx.start_tls_peer.(:nosan, [])
      opts = %{tls: %{cacertfile: ctx.certs.ca.cert}}

      assert {:error, {:tls, detail}} =
               :ws_port.connect("wss://localhost:#{Peer.port(peer)}/echo", opts)

      assert detail =~ ~r/hostname mismatch/i
    end

    test "the right CA file is accepted, by IP and by host name (with SNI)", ctx do
      peer = ctx.start_tls_peer.(:server, [])
      opts = %{tls: %{cacertfile: ctx.certs.ca.cert}}

      {:ok, conn} = :ws_port.connect("wss://localhost:#{Peer.port(peer)}/echo", opts)
      assert echo!(conn, {:text, "by name"}) == {:text, "by name"}
      assert Peer.await_line(peer, "SNI ") == "SNI localhost"
      close_quietly(conn)

      {:ok, conn} = :ws_port.connect("wss://127.0.0.1:#{Peer.port(peer)}/echo", opts)
      assert echo!(conn, {:text, "by ip"}) == {:text, "by ip"}
      close_quietly(conn)
    end

    test "server_name sets both SNI and the name checked", ctx do
      peer = ctx.start_tls_peer.(:wrongname, [])
      url = "wss://127.0.0.1:#{Peer.port(peer)}/echo"
      opts = %{tls: %{cacertfile: ctx.certs.ca.cert, server_name: "wrong.example"}}
      {:ok, conn} = :ws_port.connect(url, opts)
      assert echo!(conn, {:text, "sni"}) == {:text, "sni"}
      assert Peer.await_line(peer, "SNI ") == "SNI wrong.example"
      close_quietly(conn)
    end

    test "no SNI is sent for an IP literal", ctx do
      peer = ctx.start_tls_peer.(:server, [])
      opts = %{tls: %{cacertfile: ctx.certs.ca.cert}}
      {:ok, conn} = :ws_port.connect("wss://127.0.0.1:#{Peer.port(peer)}/echo", opts)
      assert echo!(conn, {:text, "ip"}) == {:text, "ip"}
      assert Peer.await_line(peer, "SNI ") == "SNI -"
      close_quietly(conn)
    end

    test "verify: :verify_none accepts an untrusted and a wrong-name certificate", ctx do
      for name <- [:untrusted, :wrongname] do
        peer = ctx.start_tls_peer.(name, [])
        url = "wss://127.0.0.1:#{Peer.port(peer)}/echo"
        {:ok, conn} = :ws_port.connect(url, %{tls: %{verify: :verify_none}})
        assert echo!(conn, {:text, "insecure #{name}"}) == {:text, "insecure #{name}"}
        close_quietly(conn)
      end
    end

    test "mutual TLS: the client certificate is sent when configured", ctx do
      peer = ctx.start_tls_peer.(:server, client_ca: ctx.certs.ca.cert)
      url = "wss://127.0.0.1:#{Peer.port(peer)}/echo"

      tls = %{
        cacertfile: ctx.certs.ca.cert,
        certfile: ctx.certs.client.cert,
        keyfile: ctx.certs.client.key
      }

      {:ok, conn} = :ws_port.connect(url, %{tls: tls})
      assert echo!(conn, {:text, "mtls"}) == {:text, "mtls"}
      close_quietly(conn)

      # Without a client certificate the server refuses us. With TLS 1.2
      # the certificate is checked inside the handshake; this server
      # (python's asyncio ssl) then closes the TCP connection without
      # sending its alert (`openssl s_client -tls1_2` sees "unexpected eof"
      # too), so all we see is an EOF during the handshake: a network
      # failure like any other (`eof`; a reset if our last flight was
      # unread). A server that sends the alert gives {:tls, detail}.
      peer12 = ctx.start_tls_peer.(:server, client_ca: ctx.certs.ca.cert, args: ["--tls12"])

      url12 = "wss://127.0.0.1:#{Peer.port(peer12)}/echo"

      assert {:error, reason} = :ws_port.connect(url12, %{tls: %{cacertfile: ctx.certs.ca.cert}})

      assert reason in [:eof, :econnreset] or match?({:tls, _}, reason), inspect(reason)
    end
  end

  ## connection failures

  describe "connection errors" do
    test "econnrefused on a closed port" do
      port = free_port()
      assert {:error, :econnrefused} = :ws_port.connect("ws://127.0.0.1:#{port}/", %{})
    end

    test "invalid URLs are refused without touching the network" do
      for url <- [
            "http://127.0.0.1/",
            "ftp://127.0.0.1/",
            "ws://",
            "not a url",
            "ws://127.0.0.1:99999/",
            "ws://127.0.0.1:-1/",
            "ws://[::1/"
          ] do
        assert {:error, {:invalid_url, detail}} = :ws_port.connect(url, %{}),
               "expected invalid_url for #{inspect(url)}"

        assert is_binary(detail)
      end
    end

    test "a name that does not resolve is a dns error" do
      assert {:error, {:dns, _}} =
               :ws_port.connect("ws://ws-port-test.invalid/", %{connect_timeout: 60_000})
    end

    test "connect_timeout covers a server that never answers the upgrade" do
      # The kernel completes the TCP handshake for the backlog; nobody ever
      # accepts or answers, so only the timeout can end this.
      {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, backlog: 4)
      {:ok, port} = :inet.port(l)

      assert {:error, :timeout} =
               :ws_port.connect("ws://127.0.0.1:#{port}/", %{connect_timeout: 500})

      :gen_tcp.close(l)
    end

    test "a wrong Sec-WebSocket-Accept is a bad handshake" do
      {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, active: false, packet: :http_bin)
      {:ok, port} = :inet.port(l)

      server =
        Task.async(fn ->
          {:ok, s} = :gen_tcp.accept(l)
          read_http_request(s)

          :ok =
            :gen_tcp.send(
              s,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" <>
                "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
            )

          s
        end)

      assert {:error, {:bad_handshake, detail}} = :ws_port.connect("ws://127.0.0.1:#{port}/", %{})

      assert is_binary(detail)
      :gen_tcp.close(Task.await(server))
      :gen_tcp.close(l)
    end

    test "a server that drops TCP after the upgrade reports eof" do
      {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, active: false, packet: :http_bin)
      {:ok, port} = :inet.port(l)

      server =
        Task.async(fn ->
          {:ok, s} = :gen_tcp.accept(l)
          key = read_http_request(s)[:"sec-websocket-key"]

          accept =
            Base.encode64(:crypto.hash(:sha, key <> "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))

          :ok =
            :gen_tcp.send(
              s,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" <>
                "Sec-WebSocket-Accept: #{accept}\r\n\r\n"
            )

          receive do
            :drop -> :gen_tcp.close(s)
          end
        end)

      {:ok, conn} = :ws_port.connect("ws://127.0.0.1:#{port}/", %{retry: false})
      send(server.pid, :drop)
      Task.await(server)
      assert_receive {:ws_port_closed, ^conn, :eof}, @wait
      :gen_tcp.close(l)
    end

    test "a host name is resolved (ws://localhost)" do
      peer = Peer.start!(:python)
      on_exit(fn -> Peer.stop(peer) end)
      {:ok, conn} = :ws_port.connect("ws://localhost:#{Peer.port(peer)}/echo", %{})
      assert echo!(conn, {:text, "via localhost"}) == {:text, "via localhost"}
      close_quietly(conn)
    end
  end

  ## RFC 6455 4.1: what the client must check in the server's handshake.
  # No WebSocket server library answers like this, so a gen_tcp server
  # stands in: it reads the upgrade request and writes the response given.

  describe "handshake checks" do
    test "a subprotocol the client did not offer fails the handshake" do
      url = handshake_server(&ok_101(&1, "Sec-WebSocket-Protocol: not.offered\r\n"))

      assert {:error, {:bad_handshake, _}} =
               :ws_port.connect(url, %{protocols: ["chat.v1"], retry: false})
    end

    test "a subprotocol when none was offered fails the handshake" do
      url = handshake_server(&ok_101(&1, "Sec-WebSocket-Protocol: chat.v1\r\n"))
      assert {:error, {:bad_handshake, _}} = :ws_port.connect(url, %{retry: false})
    end

    test "an extension the client did not offer fails the handshake" do
      url = handshake_server(&ok_101(&1, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
      assert {:error, {:bad_handshake, _}} = :ws_port.connect(url, %{retry: false})
    end

    test "a 101 without Upgrade: websocket fails the handshake" do
      url =
        handshake_server(fn key ->
          "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n" <>
            "Sec-WebSocket-Accept: #{accept_key(key)}\r\n\r\n"
        end)

      assert {:error, {:bad_handshake, _}} = :ws_port.connect(url, %{retry: false})
    end

    test "a 200 answer is an http_status, not a connection" do
      url =
        handshake_server(fn _ ->
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Why: not a websocket\r\nContent-Length: 3\r\n\r\nhi\n"
        end)

      assert {:error, {:http_status, 200, headers}} = :ws_port.connect(url, %{retry: false})

      assert {"x-why", "not a websocket"} in Enum.map(headers, fn {k, v} ->
               {String.downcase(k), v}
             end)
    end

    test "the control: a correct 101 from the same server connects" do
      url = handshake_server(&ok_101(&1, ""))
      assert {:ok, conn} = :ws_port.connect(url, %{retry: false})
      close_quietly(conn)
    end

    test "wss:// to a plain (non-TLS) server is a TLS error", ctx do
      peer = Peer.start!(:python)
      on_exit(fn -> Peer.stop(peer) end)

      assert {:error, {:tls, _}} =
               :ws_port.connect("wss://127.0.0.1:#{Peer.port(peer)}/echo", %{
                 tls: %{cacertfile: ctx.certs.ca.cert},
                 retry: false
               })
    end
  end

  defp accept_key(key),
    do: Base.encode64(:crypto.hash(:sha, key <> "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))

  defp ok_101(key, extra) do
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" <>
      "Sec-WebSocket-Accept: #{accept_key(key)}\r\n" <> extra <> "\r\n"
  end

  # A one-shot gen_tcp server: reads one upgrade request, writes
  # respond.(sec_websocket_key), keeps the socket open until the test ends.
  defp handshake_server(respond) do
    {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, active: false, packet: :http_bin)
    {:ok, port} = :inet.port(l)
    test_pid = self()

    server =
      spawn_link(fn ->
        {:ok, s} = :gen_tcp.accept(l)
        key = read_http_request(s)[:"sec-websocket-key"]
        :ok = :gen_tcp.send(s, respond.(key))
        ref = Process.monitor(test_pid)

        receive do
          {:DOWN, ^ref, _, _, _} -> :ok
        end
      end)

    on_exit(fn ->
      Process.exit(server, :kill)
      :gen_tcp.close(l)
    end)

    "ws://127.0.0.1:#{port}/"
  end

  # Reads an HTTP request with {packet, http_bin}; returns the headers the
  # raw test servers need.
  defp read_http_request(s, acc \\ %{}) do
    case :gen_tcp.recv(s, 0, @wait) do
      {:ok, :http_eoh} ->
        acc

      {:ok, {:http_header, _, name, _, value}} ->
        name = name |> to_string() |> String.downcase()

        acc =
          if name == "sec-websocket-key", do: Map.put(acc, :"sec-websocket-key", value), else: acc

        read_http_request(s, acc)

      {:ok, _} ->
        read_http_request(s, acc)
    end
  end

  describe "Elixir facade" do
    test "WsPort.connect/2 takes a keyword list" do
      peer = Peer.start!(:node)
      on_exit(fn -> Peer.stop(peer) end)

      {:ok, conn} =
        WsPort.connect("ws://127.0.0.1:#{Peer.port(peer)}/subprotocol", protocols: ["chat.v1"])

      assert recv!(conn) == {:text, "chat.v1"}
      :ok = WsPort.close(conn)
    end
  end
end
