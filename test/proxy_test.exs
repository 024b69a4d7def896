Code.require_file("support/peer.exs", __DIR__)
Code.require_file("support/proxies.exs", __DIR__)

defmodule WsPort.Test.ProxyTelemetryForward do
  @moduledoc "A telemetry stand-in (no Hex here): forwards every event to the registered test process."
  def execute(event, measurements, meta) do
    case Process.whereis(:proxy_telemetry_test) do
      nil -> :ok
      pid -> send(pid, {:telemetry, event, measurements, meta})
    end
  end
end

defmodule WsPort.ProxyTest do
  @moduledoc """
  Connections through real proxies started by the tests on 127.0.0.1
  (test/support/proxies.exs): tinyproxy for HTTP CONNECT (with and without
  BasicAuth). The WebSocket servers are test/peers/ws_server.py, over ws and
  over wss (TLS with the target inside the tunnel).
  """
  use ExUnit.Case, async: false
  import ExUnit.CaptureLog

  alias WsPort.Test.{Certs, Peer, Proxies}

  @moduletag timeout: 300_000
  # a liveness bound, not a performance threshold
  @wait 20_000
  @user "alice"
  @pass "s3cr3t-Pw"
  @backend {:ws_port_telemetry, :backend}

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    certs = Certs.make!()
    ws = Peer.start!(:python)
    wss = Peer.start!(:python, tls: {certs.server.cert, certs.server.key})

    on_exit(fn ->
      Peer.stop(ws)
      Peer.stop(wss)
      Certs.cleanup(certs)
    end)

    %{certs: certs, ws: ws, wss: wss}
  end

  defp tinyproxy!(opts \\ []) do
    p = Proxies.tinyproxy!(opts)
    on_exit(fn -> Proxies.stop(p) end)
    p
  end

  defp tagged(path), do: "#{path}?tag=#{System.unique_integer([:positive])}"

  defp echo!(conn, text) do
    :ok = :ws_port.send(conn, {:text, text})

    receive do
      {:ws_port, ^conn, {:text, got}} -> got
      {:ws_port_closed, ^conn, reason} -> flunk("closed instead: #{inspect(reason)}")
    after
      @wait -> flunk("no echo within #{@wait} ms")
    end
  end

  defp proxy_url(p, creds \\ nil) do
    case creds do
      nil -> "http://127.0.0.1:#{p.port}"
      {u, pw} -> "http://#{u}:#{pw}@127.0.0.1:#{p.port}"
    end
  end

  # the CONNECT requests tinyproxy logged
  defp connects(p) do
    for line <- String.split(Proxies.log(p), "\n"),
        [_, target] <- [Regex.run(~r/Request \(file descriptor \d+\): CONNECT (\S+) /, line)],
        do: target
  end

  describe "HTTP CONNECT (tinyproxy)" do
    test "ws:// through the proxy: the proxy connects to the target", ctx do
      p = tinyproxy!()
      port = Peer.port(ctx.ws)

      {:ok, conn} =
        :ws_port.connect("ws://127.0.0.1:#{port}" <> tagged("/echo"), %{proxy: proxy_url(p)})

      assert echo!(conn, "through the tunnel") == "through the tunnel"
      assert connects(p) == ["127.0.0.1:#{port}"]
      :ok = :ws_port.close(conn)
    end

    test "wss:// through the proxy: TLS with the target inside the tunnel, SNI and name check are the target's",
         ctx do
      p = tinyproxy!()
      port = Peer.port(ctx.wss)
      url = "wss://localhost:#{port}" <> tagged("/echo")

      {:ok, conn} =
        :ws_port.connect(url, %{
          proxy: %{type: :http, host: "127.0.0.1", port: p.port},
          tls: %{cacertfile: ctx.certs.ca.cert}
        })

      assert echo!(conn, "tls in the tunnel") == "tls in the tunnel"
      # the proxy was asked for the target's name, unresolved
      assert connects(p) == ["localhost:#{port}"]
      assert "SNI localhost" in Peer.lines(ctx.wss)
      :ok = :ws_port.close(conn)

      # the certificate is checked against the target's name, not the proxy's
      wrong = Peer.start!(:python, tls: {ctx.certs.wrongname.cert, ctx.certs.wrongname.key})
      on_exit(fn -> Peer.stop(wrong) end)

      assert {:error, {:tls, detail}} =
               :ws_port.connect("wss://localhost:#{Peer.port(wrong)}/echo", %{
                 proxy: proxy_url(p),
                 tls: %{cacertfile: ctx.certs.ca.cert},
                 retry: false
               })

      assert detail =~ "certificate verify failed" or detail =~ "hostname", detail
    end

    test "BasicAuth: the right credentials pass; none or wrong ones get {proxy, {http_status, 407, Headers}}, not retried",
         ctx do
      p = tinyproxy!(auth: {@user, @pass})
      url = "ws://127.0.0.1:#{Peer.port(ctx.ws)}" <> tagged("/echo")

      {:ok, conn} = :ws_port.connect(url, %{proxy: proxy_url(p, {@user, @pass})})
      assert echo!(conn, "authorized") == "authorized"
      :ok = :ws_port.close(conn)

      # the default retry policy: a 407 is final, like a 401 (tinyproxy
      # 1.11.1 answers a CONNECT without valid credentials with 401 and
      # WWW-Authenticate where RFC 9110 says 407 and Proxy-Authenticate:
      # whatever the proxy says is reported as it is)
      for proxy <- [proxy_url(p), proxy_url(p, {@user, "wrong"})] do
        assert {:error, {:proxy, {:http_status, status, headers}}} =
                 :ws_port.connect(url, %{proxy: proxy})

        assert status in [401, 407]

        assert Enum.any?(headers, fn {n, _} ->
                 String.downcase(n) in ["proxy-authenticate", "www-authenticate"]
               end)
      end

      # percent-encoded credentials in the URL (tinyproxy takes only
      # [A-Za-z0-9_.-] in BasicAuth), and the map form
      p2 = tinyproxy!(auth: {"bob", "pa_ss-w.rd"})
      url2 = "ws://127.0.0.1:#{Peer.port(ctx.ws)}" <> tagged("/echo")

      {:ok, c2} =
        :ws_port.connect(url2, %{proxy: "http://bob:pa%5Fss%2Dw.rd@127.0.0.1:#{p2.port}"})

      assert echo!(c2, "encoded") == "encoded"
      :ok = :ws_port.close(c2)

      {:ok, c3} =
        :ws_port.connect(url2, %{
          proxy: %{
            type: :http,
            host: "127.0.0.1",
            port: p2.port,
            username: "bob",
            password: "pa_ss-w.rd"
          }
        })

      assert echo!(c3, "map") == "map"
      :ok = :ws_port.close(c3)
    end

    test "credentials never appear in logs, info/1, telemetry or the driver's status", ctx do
      p = tinyproxy!(auth: {@user, @pass})
      url = "ws://127.0.0.1:#{Peer.port(ctx.ws)}" <> tagged("/echo")
      old = :persistent_term.get(@backend, :undefined)
      :persistent_term.put(@backend, WsPort.Test.ProxyTelemetryForward)
      Process.register(self(), :proxy_telemetry_test)

      on_exit(fn ->
        if old == :undefined,
          do: :persistent_term.erase(@backend),
          else: :persistent_term.put(@backend, old)
      end)

      log =
        capture_log(fn ->
          {:ok, conn} = :ws_port.connect(url, %{proxy: proxy_url(p, {@user, @pass})})
          {:ok, info} = :ws_port.info(conn)
          refute inspect(info) =~ @pass
          assert info.proxy == "http://127.0.0.1:#{p.port}"
          {:ws_port, driver, _} = conn
          refute inspect(:sys.get_status(driver), limit: :infinity) =~ @pass
          # its state as it is (sys:get_state: no format_status) keeps the
          # password in a fun
          refute inspect(:sys.get_state(driver), limit: :infinity) =~ @pass
          :ok = :ws_port.close(conn)

          assert {:error, {:proxy, {:http_status, _, _}}} =
                   :ws_port.connect(url, %{proxy: proxy_url(p, {@user, @pass <> "x"})})

          assert {:error, {:bad_option, {:proxy, :password}, :redacted}} =
                   :ws_port.connect(url, %{
                     proxy: %{type: :http, host: "h", username: "u", password: 1}
                   })
        end)

      refute log =~ @pass
      events = collect_telemetry([])
      assert Enum.any?(events, fn {event, _, _} -> event == [:ws_port, :connection, :up] end)
      refute inspect(events, limit: :infinity) =~ @pass
    end

    test "a refused proxy: {proxy, econnrefused}; a proxy that hangs hits connect_timeout", ctx do
      url = "ws://127.0.0.1:#{Peer.port(ctx.ws)}/echo"
      closed = Proxies.free_port()

      assert {:error, {:proxy, :econnrefused}} =
               :ws_port.connect(url, %{proxy: "http://127.0.0.1:#{closed}", retry: false})

      # a listener that accepts and never answers
      {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, active: false, backlog: 16)
      {:ok, lport} = :inet.port(l)
      on_exit(fn -> :gen_tcp.close(l) end)

      assert {:error, :timeout} =
               :ws_port.connect(url, %{
                 proxy: "http://127.0.0.1:#{lport}",
                 connect_timeout: 300,
                 retry: false
               })

      # a target the proxy cannot reach: the proxy's own answer
      p = tinyproxy!()
      dead = Proxies.free_port()

      assert {:error, {:proxy, {:http_status, status, _}}} =
               :ws_port.connect("ws://127.0.0.1:#{dead}/", %{proxy: proxy_url(p), retry: false})

      assert status >= 500
    end

    test "a proxy killed mid-stream: the connection goes down and comes back through it once it is restarted",
         ctx do
      p = tinyproxy!()
      port = Peer.port(ctx.ws)

      {:ok, conn} =
        :ws_port.connect("ws://127.0.0.1:#{port}" <> tagged("/echo"), %{
          proxy: proxy_url(p),
          retry: %{delay: 100, max_delay: 200, backoff_factor: 2, jitter: 0.1}
        })

      assert echo!(conn, "before") == "before"
      Proxies.kill!(p)

      assert_receive {:ws_port_down, ^conn, reason, %{attempt: 1}}, @wait
      assert reason in [:eof, :econnreset]
      # while the proxy is down, attempts fail at the proxy
      assert_receive {:ws_port_down, ^conn, {:proxy, :econnrefused}, _}, @wait

      File.write!(p.log, "")
      p = Proxies.restart!(p)
      on_exit(fn -> Proxies.stop(p) end)
      assert_receive {:ws_port_up, ^conn, _}, @wait
      assert echo!(conn, "after") == "after"
      assert connects(p) == ["127.0.0.1:#{port}"]
      :ok = :ws_port.close(conn)
    end
  end

  describe "SOCKS5 (dante)" do
    defp dante!(opts \\ []) do
      p = Proxies.dante!(opts)
      on_exit(fn -> Proxies.stop(p) end)
      p
    end

    test "ws:// and wss:// through socks5://: the proxy resolves the target's name", ctx do
      p = dante!()
      ws_port = Peer.port(ctx.ws)

      {:ok, conn} =
        :ws_port.connect("ws://localhost:#{ws_port}" <> tagged("/echo"), %{
          proxy: "socks5://127.0.0.1:#{p.port}"
        })

      assert echo!(conn, "socks") == "socks"
      :ok = :ws_port.close(conn)

      wss_port = Peer.port(ctx.wss)

      {:ok, conn} =
        :ws_port.connect("wss://localhost:#{wss_port}" <> tagged("/echo"), %{
          proxy: %{type: :socks5h, host: "127.0.0.1", port: p.port},
          tls: %{cacertfile: ctx.certs.ca.cert}
        })

      assert echo!(conn, "tls over socks") == "tls over socks"
      assert "SNI localhost" in Peer.lines(ctx.wss)
      :ok = :ws_port.close(conn)
      # dante logged both connects (it was the one that connected)
      log = Proxies.log(p)
      assert log =~ ".#{ws_port}"
      assert log =~ ".#{wss_port}"
    end

    test "the proxy's refusals: {proxy, {socks5, Reply}}", ctx do
      p = dante!()
      proxy = "socks5h://127.0.0.1:#{p.port}"
      dead = Proxies.free_port()

      assert {:error, {:proxy, {:socks5, :connection_refused}}} =
               :ws_port.connect("ws://127.0.0.1:#{dead}/", %{proxy: proxy, retry: false})

      # a name only the proxy tries to resolve
      assert {:error, {:proxy, {:socks5, :host_unreachable}}} =
               :ws_port.connect("ws://no-such-host.invalid:#{Peer.port(ctx.ws)}/", %{
                 proxy: proxy,
                 retry: false
               })

      # a SOCKS5 proxy that is not there
      assert {:error, {:proxy, :econnrefused}} =
               :ws_port.connect("ws://127.0.0.1:#{Peer.port(ctx.ws)}/", %{
                 proxy: "socks5://127.0.0.1:#{Proxies.free_port()}",
                 retry: false
               })

      # an HTTP proxy spoken to as SOCKS5 waits for a request line that
      # never comes: connect_timeout
      t = tinyproxy!()

      assert {:error, :timeout} =
               :ws_port.connect("ws://127.0.0.1:#{Peer.port(ctx.ws)}/", %{
                 proxy: "socks5://127.0.0.1:#{t.port}",
                 retry: false,
                 connect_timeout: 500
               })
    end

    test "username/password (RFC 1929) with a system user; wrong or no credentials are refused, not retried",
         ctx do
      {user, pass} = Proxies.system_user!()
      on_exit(fn -> Proxies.remove_system_user(user) end)
      p = dante!(username: true)
      url = "ws://127.0.0.1:#{Peer.port(ctx.ws)}" <> tagged("/echo")

      {:ok, conn} =
        :ws_port.connect(url, %{proxy: "socks5://#{user}:#{pass}@127.0.0.1:#{p.port}"})

      assert echo!(conn, "authenticated") == "authenticated"
      {:ok, info} = :ws_port.info(conn)
      assert info.proxy == "socks5://127.0.0.1:#{p.port}"
      refute inspect(info) =~ pass
      :ok = :ws_port.close(conn)

      # the default retry policy: final at once
      assert {:error, {:proxy, {:socks5, :auth_failed}}} =
               :ws_port.connect(url, %{proxy: "socks5://#{user}:wrong@127.0.0.1:#{p.port}"})

      assert {:error, {:proxy, {:socks5, :auth_required}}} =
               :ws_port.connect(url, %{proxy: "socks5://127.0.0.1:#{p.port}"})
    end
  end

  describe "proxy => system and the long-lived layers" do
    test "from_env reads https_proxy / http_proxy / all_proxy and no_proxy as curl does" do
      env = fn vars -> fn name -> Map.get(vars, name, false) end end
      f = &:ws_port_proxy.from_env/2

      assert {:ok, :none} = f.("wss://h/", env.(%{}))

      assert {:ok, %{type: :http, host: "p", port: 3128}} =
               f.("wss://h/", env.(%{~c"HTTPS_PROXY" => ~c"http://p:3128"}))

      # http_proxy only in lowercase (curl ignores HTTP_PROXY); no scheme = http
      assert {:ok, :none} = f.("ws://h/", env.(%{~c"HTTP_PROXY" => ~c"p:1"}))
      assert {:ok, %{host: "p", port: 1}} = f.("ws://h/", env.(%{~c"http_proxy" => ~c"p:1"}))
      # https_proxy is for wss only; all_proxy for both
      assert {:ok, :none} = f.("ws://h/", env.(%{~c"https_proxy" => ~c"p:1"}))

      assert {:ok, %{type: :socks5, host: "s"}} =
               f.("ws://h/", env.(%{~c"ALL_PROXY" => ~c"socks5h://s:1080"}))

      proxied = %{~c"https_proxy" => ~c"http://p:1"}

      for {no_proxy, host, direct} <- [
            {"example.com", "example.com", true},
            {"example.com", "api.example.com", true},
            {".example.com", "api.example.com", true},
            {"example.com", "notexample.com", false},
            {" other.org , 10.0.0.1", "10.0.0.1", true},
            {"*", "anything", true},
            {"[::1]", "[::1]", true},
            {"", "h", false}
          ] do
        vars = Map.put(proxied, ~c"no_proxy", String.to_charlist(no_proxy))
        want = if direct, do: :none, else: %{type: :http, host: "p", port: 1}

        assert {:ok, ^want} = f.("wss://#{host}:443/", env.(vars)),
               inspect({no_proxy, host})
      end

      assert {:error, {:bad_option, {:proxy, :scheme}, "ftp"}} =
               f.("wss://h/", env.(%{~c"https_proxy" => ~c"ftp://p"}))
    end

    test "proxy: :system connects through the environment's proxy, or directly for no_proxy",
         ctx do
      p = tinyproxy!()
      port = Peer.port(ctx.ws)

      saved =
        for v <- ~w(http_proxy all_proxy ALL_PROXY no_proxy NO_PROXY), do: {v, System.get_env(v)}

      on_exit(fn ->
        for {v, old} <- saved, do: if(old, do: System.put_env(v, old), else: System.delete_env(v))
      end)

      for {v, _} <- saved, do: System.delete_env(v)
      System.put_env("http_proxy", "127.0.0.1:#{p.port}")

      {:ok, conn} =
        :ws_port.connect("ws://127.0.0.1:#{port}" <> tagged("/echo"), %{proxy: :system})

      assert echo!(conn, "env") == "env"
      {:ok, info} = :ws_port.info(conn)
      assert info.proxy == "http://127.0.0.1:#{p.port}"
      :ok = :ws_port.close(conn)
      assert connects(p) == ["127.0.0.1:#{port}"]

      System.put_env("no_proxy", "localhost,127.0.0.1")

      {:ok, conn} =
        :ws_port.connect("ws://127.0.0.1:#{port}" <> tagged("/echo"), %{proxy: :system})

      assert echo!(conn, "direct") == "direct"
      assert {:ok, %{proxy: :none}} = :ws_port.info(conn)
      :ok = :ws_port.close(conn)
      assert connects(p) == ["127.0.0.1:#{port}"]

      # never by default: without the option the environment is not read
      System.delete_env("no_proxy")
      {:ok, conn} = :ws_port.connect("ws://127.0.0.1:#{port}" <> tagged("/echo"), %{})
      assert echo!(conn, "default") == "default"
      :ok = :ws_port.close(conn)
      assert connects(p) == ["127.0.0.1:#{port}"]
    end

    test "ws_port_client takes proxy; the producer validates it and passes it on", ctx do
      p = tinyproxy!()
      port = Peer.port(ctx.ws)
      url = "ws://127.0.0.1:#{port}" <> tagged("/echo")

      {:ok, client} =
        :ws_port_client.start_link(:ws_port_client_forward, url, %{
          init_arg: self(),
          proxy: "http://127.0.0.1:#{p.port}"
        })

      assert_receive {:ws_port_client_up, ^client, _}, @wait
      assert connects(p) == ["127.0.0.1:#{port}"]
      _ = :ws_port_client.close(client)

      assert {:ok, config} =
               WsPort.ProducerOptions.validate(url: url, proxy: "socks5://u:pw@127.0.0.1:1")

      # passed on inside a fun (the producer's state holds no credentials)
      proxy = WsPort.ProducerOptions.connect_opts(config).proxy
      assert proxy.() == "socks5://u:pw@127.0.0.1:1"
      refute inspect(config, limit: :infinity) =~ "pw@"

      assert {:ok, %{proxy: %{type: :socks5, username: "u", password: "pw"}}} =
               :ws_port_proto.normalize_connect_opts(WsPort.ProducerOptions.connect_opts(config))

      assert {:error, msg} = WsPort.ProducerOptions.validate(url: url, proxy: "ftp://u:hidden@h")
      assert msg =~ ":proxy"
      refute msg =~ "hidden"
      assert {:ok, _} = WsPort.ProducerOptions.validate(url: url, proxy: :system)
    end

    test "the Phoenix client takes proxy (it passes connect/2's options on)" do
      phx = Peer.start!(:phoenix)
      on_exit(fn -> Peer.stop(phx) end)
      p = tinyproxy!(auth: {@user, @pass})
      port = Peer.port(phx)

      {:ok, socket} =
        WsPort.Phoenix.connect("ws://127.0.0.1:#{port}/socket/websocket",
          proxy: "http://#{@user}:#{@pass}@127.0.0.1:#{p.port}"
        )

      assert {:ok, _} = WsPort.Phoenix.join(socket, "room:proxy")
      assert connects(p) == ["127.0.0.1:#{port}"]
      :ok = WsPort.Phoenix.disconnect(socket)
    end
  end

  describe "the CLI's --proxy" do
    # priv/ws_port connect URL --proxy P, stdin from `input`; {status, stdout, stderr}
    defp cli(args, input) do
      dir =
        Path.join(System.tmp_dir!(), "ws_port_cli_proxy_#{System.unique_integer([:positive])}")

      File.mkdir_p!(dir)
      on_exit(fn -> File.rm_rf(dir) end)
      in_file = Path.join(dir, "in")
      err_file = Path.join(dir, "err")
      File.write!(in_file, input)
      script = ~s(exec timeout 60 "$0" "$@" <"$WSP_IN" 2>"$WSP_ERR")
      bin = Path.expand("../priv/ws_port", __DIR__)

      {out, status} =
        System.cmd("/bin/sh", ["-c", script, bin | args],
          env: [{"WSP_IN", in_file}, {"WSP_ERR", err_file}]
        )

      {status, out, File.read!(err_file)}
    end

    test "through tinyproxy (BasicAuth) and dante; refusals and bad URLs", ctx do
      t = tinyproxy!(auth: {@user, @pass})
      port = Peer.port(ctx.ws)
      url = "ws://127.0.0.1:#{port}/echo"

      assert {0, "hi\n", err} =
               cli(
                 [
                   "connect",
                   url,
                   "--proxy",
                   "http://#{@user}:#{@pass}@127.0.0.1:#{t.port}",
                   "--count",
                   "1"
                 ],
                 "hi\n"
               )

      refute err =~ @pass
      assert connects(t) == ["127.0.0.1:#{port}"]

      assert {3, "", err} =
               cli(
                 ["connect", url, "--proxy", "http://#{@user}:x#{@pass}@127.0.0.1:#{t.port}"],
                 ""
               )

      assert err =~ "proxy: upgrade refused: HTTP 401" or err =~ "HTTP 407", err
      refute err =~ @pass

      d = Proxies.dante!()
      on_exit(fn -> Proxies.stop(d) end)

      assert {0, "socks\n", _} =
               cli(
                 [
                   "connect",
                   "ws://localhost:#{port}/echo",
                   "--proxy",
                   "socks5h://127.0.0.1:#{d.port}",
                   "--count",
                   "1"
                 ],
                 "socks\n"
               )

      assert {3, "", err} =
               cli(
                 [
                   "connect",
                   "ws://no-such-host.invalid/",
                   "--proxy",
                   "socks5://127.0.0.1:#{d.port}"
                 ],
                 ""
               )

      assert err =~ "proxy: socks5 host_unreachable", err

      assert {3, "", err} =
               cli(["connect", url, "--proxy", "http://127.0.0.1:#{Proxies.free_port()}"], "")

      assert err =~ "proxy: connection refused", err

      for {bad, msg} <- [
            {"ftp://h:1", "scheme must be"},
            {"http://u:sec%zzret@h:1", "password must be"},
            {"http://h:0", "port must be"},
            {"http://h:1/x", "no path"},
            {"h:1", "needs a scheme"}
          ] do
        assert {2, "", err} = cli(["connect", url, "--proxy", bad], "")
        assert err =~ msg, err
        refute err =~ "sec%zzret"
      end
    end
  end

  describe "TLS options" do
    # the HPKP / OkHttp pin of a certificate: base64(SHA-256(SubjectPublicKeyInfo DER))
    defp spki_pin(cert) do
      {out, 0} =
        System.cmd("/bin/sh", [
          "-c",
          "openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der | " <>
            "openssl dgst -sha256 -binary | base64",
          "sh",
          cert
        ])

      String.trim(out)
    end

    test "pins: a pinned key in the chain passes (leaf or CA); none is a tls error, not retried",
         ctx do
      url = "wss://localhost:#{Peer.port(ctx.wss)}" <> tagged("/echo")
      tls = %{cacertfile: ctx.certs.ca.cert}
      leaf = spki_pin(ctx.certs.server.cert)
      ca = spki_pin(ctx.certs.ca.cert)
      other = spki_pin(ctx.certs.untrusted.cert)

      for pins <- [[leaf], [other, "sha256/" <> ca]] do
        {:ok, conn} = :ws_port.connect(url, %{tls: Map.put(tls, :pins, pins)})
        assert echo!(conn, "pinned") == "pinned"
        :ok = :ws_port.close(conn)
      end

      assert {:error, {:tls, "certificate pin mismatch" <> _}} =
               :ws_port.connect(url, %{tls: Map.put(tls, :pins, [other])})

      # through a proxy too: the pin is the target's
      p = tinyproxy!()

      assert {:error, {:tls, "certificate pin mismatch" <> _}} =
               :ws_port.connect(url, %{
                 tls: Map.put(tls, :pins, [other]),
                 proxy: "http://127.0.0.1:#{p.port}"
               })

      for bad <- [[], ["not base64!"], [Base.encode64("short")], "x"] do
        assert {:error, {:bad_option, {:tls, :pins}, ^bad}} =
                 :ws_port.connect(url, %{tls: Map.put(tls, :pins, bad)})
      end
    end

    test "server_name_indication => disable: no SNI, the name is still checked", ctx do
      url = "wss://localhost:#{Peer.port(ctx.wss)}" <> tagged("/echo")
      tls = %{cacertfile: ctx.certs.ca.cert, server_name_indication: :disable}
      before = Enum.count(Peer.lines(ctx.wss), &(&1 == "SNI -"))
      {:ok, conn} = :ws_port.connect(url, %{tls: tls})
      assert echo!(conn, "no sni") == "no sni"
      :ok = :ws_port.close(conn)
      assert Enum.count(Peer.lines(ctx.wss), &(&1 == "SNI -")) == before + 1

      wrong = Peer.start!(:python, tls: {ctx.certs.wrongname.cert, ctx.certs.wrongname.key})
      on_exit(fn -> Peer.stop(wrong) end)

      assert {:error, {:tls, _}} =
               :ws_port.connect("wss://localhost:#{Peer.port(wrong)}/echo", %{
                 tls: tls,
                 retry: false
               })

      assert {:error, {:bad_option, {:tls, :server_name_indication}, :enable}} =
               :ws_port.connect(url, %{tls: %{server_name_indication: :enable}})
    end

    test "cacerts as DER binaries (what public_key:cacerts_get/0 gives) replace the system store",
         ctx do
      url = "wss://localhost:#{Peer.port(ctx.wss)}" <> tagged("/echo")
      [{:Certificate, der, _}] = :public_key.pem_decode(File.read!(ctx.certs.ca.cert))
      {:ok, conn} = :ws_port.connect(url, %{tls: %{cacerts: [der]}})
      assert echo!(conn, "in memory") == "in memory"
      :ok = :ws_port.close(conn)

      # OTP 25's system store, as cacerts_get/0 returns it: no test CA in it
      system = :public_key.cacerts_get()
      assert system != []

      assert {:error, {:tls, "certificate verify failed" <> _}} =
               :ws_port.connect(url, %{tls: %{cacerts: system}})

      # the same store plus the test CA
      {:ok, conn} = :ws_port.connect(url, %{tls: %{cacerts: system ++ [der]}})
      :ok = :ws_port.close(conn)

      assert {:error, {:tls, "cacerts: certificate 2 (of 2) is not a DER X.509 certificate"}} =
               :ws_port.connect(url, %{tls: %{cacerts: [der, "junk"]}})

      for bad <- [[], [:x], "x"] do
        assert {:error, {:bad_option, {:tls, :cacerts}, ^bad}} =
                 :ws_port.connect(url, %{tls: %{cacerts: bad}})
      end
    end

    test "versions, ciphers (TLS 1.2) and ciphersuites (TLS 1.3)", ctx do
      ca = ctx.certs.ca.cert

      tls12 =
        Peer.start!(:python, tls: {ctx.certs.server.cert, ctx.certs.server.key}, args: ["--tls12"])

      on_exit(fn -> Peer.stop(tls12) end)
      url12 = "wss://localhost:#{Peer.port(tls12)}" <> tagged("/echo")

      # a TLS 1.2 server: 1.3 only fails, 1.2 and 1.3 works
      # (the python server ends the TCP connection on a ClientHello without
      # TLS 1.2: eof, as a reset during a handshake is reported)
      assert {:error, reason} =
               :ws_port.connect(url12, %{tls: %{cacertfile: ca, versions: [:"tlsv1.3"]}})

      assert reason == :eof or match?({:tls, _}, reason), inspect(reason)

      {:ok, conn} =
        :ws_port.connect(url12, %{tls: %{cacertfile: ca, versions: [:"tlsv1.3", :"tlsv1.2"]}})

      :ok = :ws_port.close(conn)

      # the server's key is EC (P-256): RSA-only TLS 1.2 suites cannot be used
      assert {:error, reason} =
               :ws_port.connect(url12, %{
                 tls: %{cacertfile: ca, ciphers: "ECDHE-RSA-AES128-GCM-SHA256"}
               })

      assert reason == :eof or match?({:tls, _}, reason), inspect(reason)

      {:ok, conn} =
        :ws_port.connect(url12, %{
          tls: %{
            cacertfile: ca,
            ciphers: ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"]
          }
        })

      assert echo!(conn, "1.2") == "1.2"
      :ok = :ws_port.close(conn)

      url13 = "wss://localhost:#{Peer.port(ctx.wss)}" <> tagged("/echo")

      {:ok, conn} =
        :ws_port.connect(url13, %{
          tls: %{
            cacertfile: ca,
            versions: [:"tlsv1.3"],
            ciphersuites: "TLS_CHACHA20_POLY1305_SHA256"
          }
        })

      assert echo!(conn, "1.3") == "1.3"
      :ok = :ws_port.close(conn)

      assert {:error, {:tls, "cannot set ciphersuites NOPE" <> _}} =
               :ws_port.connect(url13, %{tls: %{cacertfile: ca, ciphersuites: "NOPE"}})

      assert {:error, {:tls, "cannot set ciphers NOPE" <> _}} =
               :ws_port.connect(url13, %{tls: %{cacertfile: ca, ciphers: "NOPE"}})

      for bad <- [[:"tlsv1.1"], [], :"tlsv1.2"] do
        assert {:error, {:bad_option, {:tls, :versions}, ^bad}} =
                 :ws_port.connect(url13, %{tls: %{versions: bad}})
      end
    end

    test "a CA file that changed is read again for new connections (a rotated bundle)", ctx do
      url = "wss://localhost:#{Peer.port(ctx.wss)}" <> tagged("/echo")
      dir = Path.join(System.tmp_dir!(), "ws_port_ca_rot_#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      on_exit(fn -> File.rm_rf(dir) end)
      bundle = Path.join(dir, "bundle.pem")
      # one port program (each has its own cache of TLS contexts)
      {:ok, probe} = :ws_port.connect("ws://127.0.0.1:#{Peer.port(ctx.ws)}/echo", %{})
      {:ws_port, driver, _} = probe
      :ok = :ws_port.close(probe)
      File.cp!(ctx.certs.ca.cert, bundle)

      {:ok, conn} = :ws_port.connect(url, %{tls: %{cacertfile: bundle}, driver: driver})
      :ok = :ws_port.close(conn)

      # rotated to a bundle without the test CA: new connections fail...
      File.cp!(ctx.certs.untrusted.cert, bundle)

      assert {:error, {:tls, "certificate verify failed" <> _}} =
               :ws_port.connect(url, %{tls: %{cacertfile: bundle}, driver: driver})

      # ...and work again once it is back (replaced by a rename, as tools do)
      tmp = bundle <> ".new"
      File.write!(tmp, File.read!(ctx.certs.untrusted.cert) <> File.read!(ctx.certs.ca.cert))
      File.rename!(tmp, bundle)
      {:ok, conn} = :ws_port.connect(url, %{tls: %{cacertfile: bundle}, driver: driver})
      assert echo!(conn, "rotated") == "rotated"
      :ok = :ws_port.close(conn)
    end

    test "the TLS context cache is bounded: many configurations, then the first again", ctx do
      url = "wss://localhost:#{Peer.port(ctx.wss)}" <> tagged("/echo")
      [{:Certificate, der, _}] = :public_key.pem_decode(File.read!(ctx.certs.ca.cert))
      [{:Certificate, other, _}] = :public_key.pem_decode(File.read!(ctx.certs.untrusted.cert))

      # 40 distinct configurations (more than the 32 kept): each works
      for k <- 1..40 do
        {:ok, conn} = :ws_port.connect(url, %{tls: %{cacerts: [der | List.duplicate(other, k)]}})

        :ok = :ws_port.close(conn)
      end

      {:ok, conn} =
        :ws_port.connect(url, %{tls: %{cacerts: [der, other]}, driver: :ws_port_driver_1})

      assert echo!(conn, "after eviction") == "after eviction"
      :ok = :ws_port.close(conn)
    end
  end

  describe "the proxy option" do
    test "bad values are refused naming the part, never echoing a password" do
      url = "ws://127.0.0.1:1/"

      for {proxy, want} <- [
            {"ftp://h:1", {:bad_option, {:proxy, :scheme}, "ftp"}},
            {"https://h:1", {:bad_option, {:proxy, :scheme}, "https"}},
            {"http://h:0", {:bad_option, {:proxy, :port}, 0}},
            {"http://h:99999", {:bad_option, {:proxy, :port}, 99999}},
            {"http://h:1/path", {:bad_option, {:proxy, :path}, "/path"}},
            {"http://h", {:ok, 1080}},
            {"proxyhost", {:bad_option, {:proxy, :url}, "a proxy URL needs a scheme and a host"}},
            {%{type: :gopher, host: "h"}, {:bad_option, {:proxy, :type}, :gopher}},
            {%{type: :http}, {:bad_option, {:proxy, :host}, :missing}},
            {%{type: :http, host: "h", port: -1}, {:bad_option, {:proxy, :port}, -1}},
            {%{type: :http, host: "h", user: "x"}, {:bad_option, {:proxy, :user}, "x"}},
            {%{type: :socks5, host: "h", password: "secret"},
             {:bad_option, {:proxy, :username}, :missing}},
            {%{type: :http, host: "h", username: "u", password: String.duplicate("p", 256)},
             {:bad_option, {:proxy, :password}, :redacted}},
            {42, {:bad_option, :proxy, 42}}
          ] do
        case want do
          {:ok, port} ->
            assert {:ok, %{proxy: %{port: ^port}}} =
                     :ws_port_proto.normalize_connect_opts(%{proxy: proxy})

          _ ->
            assert {:error, ^want} = :ws_port.connect(url, %{proxy: proxy}), inspect(proxy)
        end
      end

      assert {:ok, %{proxy: %{type: :socks5, host: "::1", port: 9, username: "u", password: ""}}} =
               :ws_port_proto.normalize_connect_opts(%{proxy: "SOCKS5h://u@[::1]:9"})

      assert {:ok, %{proxy: :none}} = :ws_port_proto.normalize_connect_opts(%{proxy: :none})
    end
  end

  defp collect_telemetry(acc) do
    receive do
      {:telemetry, event, m, md} -> collect_telemetry([{event, m, md} | acc])
    after
      200 -> Enum.reverse(acc)
    end
  end
end
