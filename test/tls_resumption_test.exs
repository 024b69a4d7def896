Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.Test.ResumptionTelemetry do
  @moduledoc "A telemetry stand-in (no Hex here): forwards connection up events to the registered test process."
  def execute([:ws_port, :connection, :up] = event, measurements, meta) do
    case Process.whereis(:tls_resumption_test) do
      nil -> :ok
      pid -> send(pid, {:telemetry, event, measurements, meta})
    end
  end

  def execute(_event, _measurements, _meta), do: :ok
end

defmodule WsPort.TlsResumptionTest do
  @moduledoc """
  TLS session resumption across reconnects (issue 14, `tls: %{reuse_sessions:
  true}` by default), with the real port program against a real TLS server
  (test/peers/ws_server.py, python's ssl: OpenSSL) and certificates made at
  test time. The server drops the TCP connection (no close frame, no
  close_notify: a lost connection) or is killed and started again; the
  reconnect must be resumed when the server still knows the session, as
  both sides see it: the client's `tls_resumed` (ws_port_up's Info,
  `ws_port:info/1`, the up telemetry event) and the server's own
  `SSLObject.session_reused` (its `TLS <path> resumed=<0|1>` line).
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.{Certs, Peer}

  @moduletag timeout: 120_000
  @moduletag :capture_log
  # liveness bound for something that must happen
  @wait 20_000
  @backend {:ws_port_telemetry, :backend}

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)
    {:ok, certs: certs}
  end

  setup do
    old = :persistent_term.get(@backend, :undefined)
    :persistent_term.put(@backend, WsPort.Test.ResumptionTelemetry)
    Process.register(self(), :tls_resumption_test)

    on_exit(fn ->
      if old == :undefined,
        do: :persistent_term.erase(@backend),
        else: :persistent_term.put(@backend, old)
    end)

    :ok
  end

  defp start_server(ctx, args \\ []) do
    pid = Peer.start!(:python, tls: {ctx.certs.server.cert, ctx.certs.server.key}, args: args)
    on_exit(fn -> Peer.stop(pid) end)
    pid
  end

  defp tagged(path) do
    sep = if String.contains?(path, "?"), do: "&", else: "?"
    "#{path}#{sep}tag=#{System.unique_integer([:positive])}"
  end

  @retry %{delay: 50, max_delay: 100, jitter: 0.1}

  defp connect!(url, ctx, tls \\ %{}) do
    opts = %{
      await: false,
      retry: @retry,
      tls: Map.merge(%{cacertfile: ctx.certs.ca.cert}, tls)
    }

    {:ok, conn} = :ws_port.connect(url, opts)
    conn
  end

  # the next ws_port_up of conn: its Info
  defp await_up(conn) do
    receive do
      {:ws_port_up, ^conn, info} -> info
      {:ws_port_closed, ^conn, reason} -> flunk("closed: #{inspect(reason)}")
    after
      @wait -> flunk("no ws_port_up within #{@wait} ms")
    end
  end

  defp await_up_telemetry(conn) do
    receive do
      {:telemetry, [:ws_port, :connection, :up], _, %{conn: ^conn} = meta} -> meta
    after
      @wait -> flunk("no up telemetry event within #{@wait} ms")
    end
  end

  # the server's TLS lines for path, in order: [{resumed?, version}]
  defp server_tls(server, path, n) do
    re = ~r/^TLS #{Regex.escape(path)} resumed=([01]) version=(\S+)$/

    for line <- Peer.await_count(server, re, n, @wait) do
      [_, r, v] = Regex.run(re, line)
      {r == "1", v}
    end
  end

  defp close(conn) do
    :ok = :ws_port.close(conn)

    receive do
      {:ws_port_closed, ^conn, _} -> :ok
    after
      0 -> :ok
    end
  end

  # Connects to a server that drops every connection after a while and
  # returns what both sides saw of the first `ups` handshakes:
  # [{client tls_resumed, info tls_resumed, telemetry tls_resumed}] and the
  # server's [{resumed?, version}].
  defp drop_and_reconnect(ctx, server, tls, ups) do
    path = tagged("/drop?after_ms=300")
    url = "wss://localhost:#{Peer.port(server)}#{path}"
    conn = connect!(url, ctx, tls)

    client =
      for _ <- 1..ups do
        info = await_up(conn)
        meta = await_up_telemetry(conn)
        # info/1 of the open connection (the server drops it 300 ms later)
        {:ok, i} = :ws_port.info(conn)
        info_resumed = if i.state == :open, do: i.tls_resumed, else: :not_open
        {info.tls_resumed, info_resumed, meta.tls_resumed}
      end

    close(conn)
    {client, server_tls(server, path, ups)}
  end

  test "TLS 1.3: a dropped connection comes back resumed, as the server sees it", ctx do
    server = start_server(ctx)
    {client, seen} = drop_and_reconnect(ctx, server, %{}, 3)

    assert [{false, f1, false}, {true, t2, true}, {true, t3, true}] = client
    assert f1 in [false, :not_open] and t2 in [true, :not_open] and t3 in [true, :not_open]
    assert [{false, "TLSv1.3"}, {true, "TLSv1.3"}, {true, "TLSv1.3"}] = seen
  end

  test "TLS 1.2: a dropped connection comes back resumed, as the server sees it", ctx do
    server = start_server(ctx, ["--tls12"])
    {client, seen} = drop_and_reconnect(ctx, server, %{}, 3)

    assert [{false, _, false}, {true, _, true}, {true, _, true}] = client
    assert [{false, "TLSv1.2"}, {true, "TLSv1.2"}, {true, "TLSv1.2"}] = seen
  end

  test "reuse_sessions => false: every reconnect is a full handshake (TLS 1.2 and 1.3)", ctx do
    for args <- [[], ["--tls12"]] do
      server = start_server(ctx, args)
      {client, seen} = drop_and_reconnect(ctx, server, %{reuse_sessions: false}, 3)

      assert [{false, _, false}, {false, _, false}, {false, _, false}] = client
      assert [{false, _}, {false, _}, {false, _}] = seen
      Peer.stop(server)
    end
  end

  test "info/1: tls_resumed is true on a resumed open connection, undefined for ws://",
       ctx do
    server = start_server(ctx)
    path = tagged("/echo")
    url = "wss://localhost:#{Peer.port(server)}#{path}"
    conn = connect!(url, ctx)
    assert %{tls_resumed: false} = await_up(conn)
    assert {:ok, %{state: :open, tls_resumed: false}} = :ws_port.info(conn)
    # a reconnect asked for by the owner offers the session too
    :ok = :ws_port.reconnect(conn, 0)
    assert %{tls_resumed: true} = await_up(conn)
    assert {:ok, %{state: :open, tls_resumed: true}} = :ws_port.info(conn)
    :ok = :ws_port.send(conn, {:text, "after resumption"})
    assert_receive {:ws_port, ^conn, {:text, "after resumption"}}, @wait
    close(conn)
    assert [{false, _}, {true, _}] = server_tls(server, path, 2)

    plain = Peer.start!(:python)
    on_exit(fn -> Peer.stop(plain) end)
    {:ok, ws} = :ws_port.connect("ws://127.0.0.1:#{Peer.port(plain)}/echo", %{})
    assert {:ok, %{tls_resumed: :undefined}} = :ws_port.info(ws)
    close(ws)
  end

  test "a server that cannot resume (restarted, new ticket keys): a full handshake that works",
       ctx do
    server = start_server(ctx)
    port = Peer.port(server)
    path = tagged("/echo")
    conn = connect!("wss://localhost:#{port}#{path}", ctx)
    assert %{tls_resumed: false} = await_up(conn)
    {:exited, _} = Peer.signal_and_wait(server, "KILL")
    Peer.stop(server)
    # a new process: python's ssl makes new ticket keys, the offered ticket
    # is refused and the server does a full handshake
    server2 = start_server(ctx, ["--port", Integer.to_string(port)])
    assert %{tls_resumed: false} = await_up(conn)
    :ok = :ws_port.send(conn, {:text, "full again"})
    assert_receive {:ws_port, ^conn, {:text, "full again"}}, @wait
    assert [{false, _}] = server_tls(server2, path, 1)
    # and the session of that handshake is resumed by the next reconnect
    :ok = :ws_port.reconnect(conn, 0)
    assert %{tls_resumed: true} = await_up(conn)
    assert [{false, _}, {true, _}] = server_tls(server2, path, 2)
    close(conn)
  end

  test "a session is never offered by another connection, nor to another host name", ctx do
    server = start_server(ctx)
    port = Peer.port(server)
    # connection A (localhost) holds a resumable session: it resumed it
    path_a = tagged("/echo")
    a = connect!("wss://localhost:#{port}#{path_a}", ctx)
    assert %{tls_resumed: false} = await_up(a)
    :ok = :ws_port.reconnect(a, 0)
    assert %{tls_resumed: true} = await_up(a)

    # B: the same server and TLS settings under another name (127.0.0.1,
    # in the certificate too), and C: the same name as A; both full
    # handshakes, verified (the server's view: not resumed)
    path_b = tagged("/echo")
    b = connect!("wss://127.0.0.1:#{port}#{path_b}", ctx)
    assert %{tls_resumed: false} = await_up(b)
    path_c = tagged("/echo")
    c = connect!("wss://localhost:#{port}#{path_c}", ctx)
    assert %{tls_resumed: false} = await_up(c)
    assert [{false, _}] = server_tls(server, path_b, 1)
    assert [{false, _}] = server_tls(server, path_c, 1)

    # B's name is checked on its own handshake: a server name its
    # certificate does not have fails verification, session or not
    {:ok, d} =
      :ws_port.connect("wss://localhost:#{port}#{tagged("/echo")}", %{
        retry: false,
        tls: %{cacertfile: ctx.certs.ca.cert, server_name: "other.example"}
      })
      |> case do
        {:error, {:tls, msg}} -> {:ok, msg}
        other -> flunk("expected a hostname mismatch, got #{inspect(other)}")
      end

    assert d =~ "hostname mismatch"
    Enum.each([a, b, c], &close/1)
  end

  test "pins: a pinned connection resumes (its pins were checked on the session's handshake)",
       ctx do
    server = start_server(ctx)
    path = tagged("/echo")
    # pinned on the CA key: the first handshake passes the pin check, the
    # resumed one (no verified chain up to the anchor in a resumed session)
    # is trusted because the session is this connection's own
    conn =
      connect!("wss://localhost:#{Peer.port(server)}#{path}", ctx, %{
        pins: [spki_pin(ctx.certs.ca.cert)]
      })

    assert %{tls_resumed: false} = await_up(conn)
    :ok = :ws_port.reconnect(conn, 0)
    assert %{tls_resumed: true} = await_up(conn)
    :ok = :ws_port.send(conn, {:text, "pinned"})
    assert_receive {:ws_port, ^conn, {:text, "pinned"}}, @wait
    close(conn)
    assert [{false, _}, {true, _}] = server_tls(server, path, 2)
  end

  test "reuse_sessions must be a boolean", ctx do
    for bad <- [:yes, 1, "true", nil] do
      assert {:error, {:bad_option, {:tls, :reuse_sessions}, ^bad}} =
               :ws_port.connect("wss://localhost:1/", %{tls: %{reuse_sessions: bad}})
    end

    _ = ctx
  end

  # the HPKP / OkHttp pin of a certificate: base64(SHA-256(SubjectPublicKeyInfo DER))
  defp spki_pin(cert) do
    [{:Certificate, der, _}] = :public_key.pem_decode(File.read!(cert))
    otp = :public_key.pkix_decode_cert(der, :plain)
    spki = elem(elem(otp, 1), 7)
    Base.encode64(:crypto.hash(:sha256, :public_key.der_encode(:SubjectPublicKeyInfo, spki)))
  end
end
