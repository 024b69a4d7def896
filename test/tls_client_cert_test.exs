Code.require_file("support/peer.exs", __DIR__)
Code.require_file("support/test_clients.exs", __DIR__)
Code.require_file("support/phoenix_clients.exs", __DIR__)

defmodule WsPort.TlsClientCertTest do
  @moduledoc """
  The client certificate and key given in memory (`tls: cert, key,
  password`): the real port program against test/peers/ws_server.py with a
  TLS context that requires a client certificate signed by the test CA
  (`verify_mode = CERT_REQUIRED`), on 127.0.0.1. Certificates and keys (EC
  P-256 from test/peers/make_certs.sh, plus an RSA one and the DER and
  encrypted forms) are made at test time with the openssl CLI.
  """
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias WsPort.Test.{Certs, Peer}

  @moduletag timeout: 180_000
  @moduletag :capture_log
  # liveness bound, not a performance threshold
  @wait 20_000
  @password "s3cret-Passw0rd"

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)
    dir = certs.dir
    ca = certs.ca

    # the forms of the EC client key, and an RSA client certificate and key
    openssl!(~w(pkcs8 -topk8 -nocrypt -in #{certs.client.key} -outform DER -out #{dir}/ec_p8.der))
    openssl!(~w(ec -in #{certs.client.key} -outform DER -out #{dir}/ec_sec1.der))
    openssl!(~w(x509 -in #{certs.client.cert} -outform DER -out #{dir}/client.der))

    openssl!(
      ~w(pkcs8 -topk8 -v2 aes-256-cbc -in #{certs.client.key} -out #{dir}/ec_enc.pem -passout) ++
        ["pass:#{@password}"]
    )

    openssl!(
      ~w(pkcs8 -topk8 -v2 aes-256-cbc -in #{certs.client.key} -outform DER -out #{dir}/ec_enc.der -passout) ++
        ["pass:#{@password}"]
    )

    openssl!(~w(genrsa -traditional -out #{dir}/rsa.key 2048))

    openssl!(
      ~w(req -new -key #{dir}/rsa.key -out #{dir}/rsa.csr -subj) ++ ["/CN=ws_port rsa client"]
    )

    File.write!("#{dir}/rsa.ext", "basicConstraints=CA:false\nextendedKeyUsage=clientAuth\n")

    openssl!(
      ~w(x509 -req -in #{dir}/rsa.csr -CA #{ca.cert} -CAkey #{ca.key} -CAcreateserial -days 2 -sha256 -extfile #{dir}/rsa.ext -out #{dir}/rsa.pem)
    )

    openssl!(~w(rsa -in #{dir}/rsa.key -traditional -outform DER -out #{dir}/rsa_pkcs1.der))

    # a traditional encrypted PEM (Proc-Type: 4,ENCRYPTED)
    openssl!(
      ~w(rsa -in #{dir}/rsa.key -traditional -aes256 -out #{dir}/rsa_enc.pem -passout) ++
        ["pass:#{@password}"]
    )

    peer = Peer.start!(:python, tls: {certs.server.cert, certs.server.key}, client_ca: ca.cert)
    on_exit(fn -> Peer.stop(peer) end)

    read = fn name -> File.read!(Path.join(dir, name)) end

    %{
      certs: certs,
      peer: peer,
      url: "wss://127.0.0.1:#{Peer.port(peer)}/echo",
      ec_cert_pem: File.read!(certs.client.cert),
      ec_key_pem: File.read!(certs.client.key),
      ec_cert_der: read.("client.der"),
      ec_p8_der: read.("ec_p8.der"),
      ec_sec1_der: read.("ec_sec1.der"),
      ec_enc_pem: read.("ec_enc.pem"),
      ec_enc_der: read.("ec_enc.der"),
      rsa_cert_pem: read.("rsa.pem"),
      rsa_key_pem: read.("rsa.key"),
      rsa_pkcs1_der: read.("rsa_pkcs1.der"),
      rsa_enc_pem: read.("rsa_enc.pem"),
      ca_pem: File.read!(ca.cert),
      dir: dir
    }
  end

  defp openssl!(args) do
    {out, status} = System.cmd("openssl", args, stderr_to_stdout: true)
    if status != 0, do: raise("openssl #{Enum.join(args, " ")} failed (#{status}):\n#{out}")
    out
  end

  defp tls(ctx, extra), do: Map.merge(%{cacertfile: ctx.certs.ca.cert}, Map.new(extra))

  defp recv!(conn) do
    receive do
      {:ws_port, ^conn, msg} -> msg
      {:ws_port_closed, ^conn, reason} -> flunk("connection closed instead: #{inspect(reason)}")
    after
      @wait -> flunk("no message within #{@wait} ms")
    end
  end

  # connects with the given tls keys and checks an echo through the server
  # that requires a client certificate
  defp echo_with!(ctx, extra) do
    {:ok, conn} = :ws_port.connect(ctx.url, %{tls: tls(ctx, extra)})
    text = "mtls #{System.unique_integer([:positive])}"
    :ok = :ws_port.send(conn, {:text, text})
    assert recv!(conn) == {:text, text}
    :ok = :ws_port.close(conn)
  end

  defp connect_error(ctx, extra) do
    assert {:error, reason} = :ws_port.connect(ctx.url, %{tls: tls(ctx, extra)})
    reason
  end

  describe "accepted by a server requiring a client certificate" do
    test "cert and key as PEM binaries (EC, and RSA)", ctx do
      echo_with!(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_key_pem)
      echo_with!(ctx, cert: ctx.rsa_cert_pem, key: ctx.rsa_key_pem)
    end

    test "a PEM chain: the leaf first, the rest sent as chain", ctx do
      # the CA after the leaf (the server has it too: still accepted)
      echo_with!(ctx, cert: ctx.ec_cert_pem <> ctx.ca_pem, key: ctx.ec_key_pem)
    end

    test "cert as DER and as a list of DER; key as DER (PKCS#8, SEC 1, PKCS#1)", ctx do
      echo_with!(ctx, cert: ctx.ec_cert_der, key: ctx.ec_p8_der)
      echo_with!(ctx, cert: [ctx.ec_cert_der], key: ctx.ec_sec1_der)
      rsa_der = pem_to_der(ctx.rsa_cert_pem)
      echo_with!(ctx, cert: rsa_der, key: ctx.rsa_pkcs1_der)
    end

    test "key as OTP ssl's {KeyType, DER}", ctx do
      echo_with!(ctx, cert: ctx.ec_cert_der, key: {:PrivateKeyInfo, ctx.ec_p8_der})
      echo_with!(ctx, cert: ctx.ec_cert_der, key: {:ECPrivateKey, ctx.ec_sec1_der})
      rsa_der = pem_to_der(ctx.rsa_cert_pem)
      echo_with!(ctx, cert: rsa_der, key: {:RSAPrivateKey, ctx.rsa_pkcs1_der})
    end

    test "an encrypted key with its password (string, charlist, fun)", ctx do
      echo_with!(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: @password)
      echo_with!(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_der, password: ~c"#{@password}")
      echo_with!(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: fn -> @password end)
      # a traditional encrypted PEM (Proc-Type: 4,ENCRYPTED)
      echo_with!(ctx, cert: ctx.rsa_cert_pem, key: ctx.rsa_enc_pem, password: @password)
    end

    test "an encrypted keyfile with password; certfile with an in-memory key", ctx do
      enc = Path.join(ctx.dir, "ec_enc.pem")
      echo_with!(ctx, certfile: ctx.certs.client.cert, keyfile: enc, password: @password)
      echo_with!(ctx, certfile: ctx.certs.client.cert, key: ctx.ec_key_pem)
      echo_with!(ctx, cert: ctx.ec_cert_pem, keyfile: ctx.certs.client.key)
      # one file with the certificate, then the key (as before cert/key)
      combo = Path.join(ctx.dir, "combo.pem")
      File.write!(combo, ctx.ec_cert_pem <> ctx.ec_enc_pem)
      echo_with!(ctx, certfile: combo, keyfile: combo, password: @password)
      echo_with!(ctx, cert: File.read!(combo), key: File.read!(combo), password: @password)
    end

    test "the same key twice and then another: each connection works", ctx do
      # contexts are shared by a digest of cert/key/password: a second
      # connection with the same key reuses it, another key gets its own
      echo_with!(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_key_pem)
      echo_with!(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_key_pem)
      echo_with!(ctx, cert: ctx.rsa_cert_pem, key: ctx.rsa_key_pem)
      echo_with!(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_key_pem)
    end
  end

  describe "port program restart" do
    test "a connection with an in-memory encrypted key comes back", ctx do
      driver = :"tls_client_cert_driver_#{System.unique_integer([:positive])}"

      start_supervised!(%{
        id: driver,
        start: {:ws_port_driver, :start_link, [driver, []]}
      })

      extra = [cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: fn -> @password end]
      {:ok, conn} = :ws_port.connect(ctx.url, %{tls: tls(ctx, extra), driver: driver})
      %{os_pid: pid} = :ws_port_driver.program(driver)
      {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(pid)], stderr_to_stdout: true)
      assert_receive {:ws_port_down, ^conn, {:port_exit, _}, _}, @wait
      # replayed by the driver with the same key and password (kept as funs)
      assert_receive {:ws_port_up, ^conn, _}, @wait
      %{os_pid: pid2} = :ws_port_driver.program(driver)
      assert pid2 != pid
      :ok = :ws_port.send(conn, {:text, "after restart"})
      assert recv!(conn) == {:text, "after restart"}
      :ok = :ws_port.close(conn)
    end
  end

  describe "refused with a clear error" do
    test "a wrong or missing password is a final {:tls, _} error", ctx do
      # the same key first with the right password: a context made with it
      # must not serve a wrong one
      echo_with!(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: @password)

      assert {:tls, msg} =
               connect_error(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: "wrong")

      assert msg =~ "wrong password"
      assert {:tls, msg} = connect_error(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem)
      assert msg =~ "encrypted and no password"

      assert {:tls, msg} =
               connect_error(ctx,
                 certfile: ctx.certs.client.cert,
                 keyfile: Path.join(ctx.dir, "ec_enc.pem"),
                 password: "wrong"
               )

      assert msg =~ "keyfile" and msg =~ "wrong password"
      refute msg =~ "wrong\""

      # final: the connect call returned the error (no retry with the
      # default policy), and no ws_port_down followed
      refute_receive {:ws_port_down, _, _, _}, 300
    end

    test "a key that does not match the certificate", ctx do
      assert {:tls, msg} = connect_error(ctx, cert: ctx.ec_cert_pem, key: ctx.rsa_key_pem)
      assert msg =~ "does not match"
    end

    test "a DER that is no certificate", ctx do
      assert {:tls, msg} = connect_error(ctx, cert: ctx.ec_p8_der, key: ctx.ec_key_pem)
      assert msg =~ "not a DER X.509 certificate"
    end

    test "no client certificate: the server refuses the handshake", ctx do
      peer12 =
        Peer.start!(:python,
          tls: {ctx.certs.server.cert, ctx.certs.server.key},
          client_ca: ctx.certs.ca.cert,
          args: ["--tls12"]
        )

      on_exit(fn -> Peer.stop(peer12) end)
      url = "wss://127.0.0.1:#{Peer.port(peer12)}/echo"
      # with the certificate: accepted
      {:ok, conn} =
        :ws_port.connect(url, %{tls: tls(ctx, cert: ctx.ec_cert_der, key: ctx.ec_p8_der)})

      :ok = :ws_port.send(conn, {:text, "tls12"})
      assert recv!(conn) == {:text, "tls12"}
      :ok = :ws_port.close(conn)
      # without: refused (python's ssl closes TCP without an alert under
      # TLS 1.2: eof or a reset; a server sending the alert gives {:tls, _})
      assert {:error, reason} = :ws_port.connect(url, %{tls: tls(ctx, []), retry: false})
      assert reason in [:eof, :econnreset] or match?({:tls, _}, reason), inspect(reason)
    end

    test "bad options are {:bad_option, {:tls, key}, value} at the call", ctx do
      bad = fn extra -> :ws_port.connect(ctx.url, %{tls: tls(ctx, extra)}) end

      assert {:error, {:bad_option, {:tls, :cert}, "junk"}} =
               bad.(cert: "junk", key: ctx.ec_key_pem)

      assert {:error, {:bad_option, {:tls, :cert}, _}} =
               bad.(
                 cert: "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
                 key: ctx.ec_key_pem
               )

      assert {:error, {:bad_option, {:tls, :key}, :redacted}} =
               bad.(cert: ctx.ec_cert_pem, key: "not a key")

      assert {:error, {:bad_option, {:tls, :key}, :redacted}} = bad.(key: ctx.ec_key_pem)

      assert {:error, {:bad_option, {:tls, :cert}, _}} =
               bad.(cert: ctx.ec_cert_pem, certfile: ctx.certs.client.cert, key: ctx.ec_key_pem)

      assert {:error, {:bad_option, {:tls, :key}, :redacted}} =
               bad.(cert: ctx.ec_cert_pem, keyfile: ctx.certs.client.key, key: ctx.ec_key_pem)

      assert {:error, {:bad_option, {:tls, :cert}, _}} = bad.(cert: ctx.ec_cert_pem)
      assert {:error, {:bad_option, {:tls, :password}, :redacted}} = bad.(password: @password)

      assert {:error, {:bad_option, {:tls, :password}, :redacted}} =
               bad.(cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: fn -> raise "no" end)

      assert {:error, {:bad_option, {:tls, :password}, :redacted}} =
               bad.(cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: "")

      assert {:error, {:bad_option, {:duplicate, {:tls, :key}}, :redacted}} =
               :ws_port.connect(ctx.url,
                 tls: [cert: ctx.ec_cert_pem, key: ctx.ec_key_pem, key: ctx.ec_key_pem]
               )
    end
  end

  describe "WsPort.Producer" do
    test "its :tls takes cert, key, password (and every key of connect/2)", ctx do
      tls = [
        cacerts: [pem_to_der(ctx.ca_pem)],
        cert: ctx.ec_cert_pem,
        key: ctx.ec_enc_pem,
        password: fn -> @password end,
        versions: [:"tlsv1.2", :"tlsv1.3"],
        server_name: "localhost"
      ]

      {:ok, core} =
        WsPort.ProducerCore.init([url: ctx.url, tls: tls], telemetry: fn _, _, _ -> :ok end)

      conn = WsPort.ProducerCore.conn(core)
      # up: the server that requires a client certificate took ours
      assert_receive {:ws_port_up, ^conn, _}, @wait
      :ok = :ws_port.close(conn)

      # a wrong password is the producer's failure too, with no secret in it
      {:ok, core} =
        WsPort.ProducerCore.init([url: ctx.url, tls: Keyword.put(tls, :password, "bad")],
          telemetry: fn _, _, _ -> :ok end
        )

      conn = WsPort.ProducerCore.conn(core)
      assert_receive {:ws_port_closed, ^conn, {:tls, msg}}, @wait
      assert msg =~ "wrong password"
      refute msg =~ "bad"
    end
  end

  describe "secrets stay hidden" do
    test "not in info/1, sys:get_status, error reasons, logs", ctx do
      # a distinctive part of each secret as it would print
      key_b64 = ctx.ec_enc_pem |> String.split("\n") |> Enum.at(2)
      der_chunk = binary_part(ctx.ec_p8_der, 40, 24)
      der_printed = der_chunk |> :binary.bin_to_list() |> Enum.join(", ")

      hidden? = fn term ->
        printed = inspect(term, limit: :infinity, printable_limit: :infinity)
        erl = IO.iodata_to_binary(:io_lib.format(~c"~p", [term]))

        for text <- [printed, erl] do
          refute text =~ @password
          refute text =~ key_b64
          refute text =~ der_printed
        end

        true
      end

      log =
        capture_log(fn ->
          extra = [cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: @password]
          {:ok, conn} = :ws_port.connect(ctx.url, %{tls: tls(ctx, extra)})
          {:ok, info} = :ws_port.info(conn)
          assert hidden?.(info)
          {:ws_port, driver, _} = conn
          driver_pid = if is_pid(driver), do: driver, else: Process.whereis(driver)
          assert hidden?.(:sys.get_status(driver_pid))

          extra = [cert: ctx.ec_cert_der, key: {:PrivateKeyInfo, ctx.ec_p8_der}]
          {:ok, conn2} = :ws_port.connect(ctx.url, %{tls: tls(ctx, extra)})
          assert hidden?.(:sys.get_status(driver_pid))
          :ok = :ws_port.close(conn)
          :ok = :ws_port.close(conn2)

          reason =
            connect_error(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: "nope")

          assert hidden?.(reason)
          refute inspect(reason) =~ "nope"

          reason = connect_error(ctx, key: ctx.ec_enc_pem, password: @password)
          assert hidden?.(reason)

          # a ws_port_client holding the options (the user's, in clear)
          {:ok, client} =
            :ws_port_client.start(:ws_port_client_forward, ctx.url, %{
              tls: tls(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: @password),
              init_arg: self()
            })

          assert_receive {:ws_port_client_up, ^client, _}, @wait
          assert hidden?.(:sys.get_status(client))
          # its crash report (the state goes through format_status/1)
          ref = Process.monitor(client)
          :ok = :sys.terminate(client, :crash_for_the_test)
          assert_receive {:DOWN, ^ref, :process, ^client, :crash_for_the_test}, @wait
        end)

      # the crash report was logged (and hid the secrets)
      assert log =~ "crash_for_the_test"
      assert hidden?.(log)
    end

    # sys:get_state/1 returns the state as it is (format_status/1 does not
    # apply): the processes that keep the options keep their secrets as funs
    test "not in sys:get_state of the driver, a ws_port_client, a producer core", ctx do
      key_b64 = ctx.ec_enc_pem |> String.split("\n") |> Enum.at(2)

      hidden? = fn term ->
        printed = inspect(term, limit: :infinity, printable_limit: :infinity)
        erl = IO.iodata_to_binary(:io_lib.format(~c"~p", [term]))
        for text <- [printed, erl], do: refute(text =~ @password or text =~ key_b64)
        true
      end

      tls = tls(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: @password)
      # the check sees the secrets in the options as given
      assert_raise ExUnit.AssertionError, fn -> hidden?.(tls) end

      log =
        capture_log(fn ->
          {:ok, conn} = :ws_port.connect(ctx.url, %{tls: tls})
          {:ws_port, driver, _} = conn
          driver_pid = if is_pid(driver), do: driver, else: Process.whereis(driver)
          assert hidden?.(:sys.get_state(driver_pid))
          :ok = :ws_port.close(conn)

          {:ok, client} =
            :ws_port_client.start(:ws_port_client_forward, ctx.url, %{
              tls: tls,
              init_arg: self()
            })

          assert_receive {:ws_port_client_up, ^client, _}, @wait
          assert hidden?.(:sys.get_state(client))
          :ok = :ws_port_client.close(client)

          # a supervised client: the supervisor keeps its start arguments
          {:ok, sup} = :ws_port_client_sup.start_link(%{name: false})
          {:ok, child} = :ws_port_client_sup.start_client(sup, ctx.url, %{tls: tls})
          assert_receive {:ws_port_client_up, ^child, _}, @wait
          assert hidden?.(:sys.get_state(sup))
          assert hidden?.(:sys.get_state(child))
          # a crash: the supervisor's report prints the child's arguments
          Process.exit(child, :kill)
          assert_receive {:ws_port_client_up, child2, _}, @wait
          assert child2 != child
          :ok = :ws_port_client_sup.stop_client(sup, child2)
          Process.unlink(sup)
          Process.exit(sup, :shutdown)

          # WsPort.Producer's state is the core (Broadway is not needed to
          # hold one): an Agent owns it here, as the producer process would
          {:ok, holder} =
            Agent.start(fn ->
              {:ok, core} = WsPort.ProducerCore.init(url: ctx.url, tls: Map.to_list(tls))
              core
            end)

          core = :sys.get_state(holder)
          assert hidden?.(core)
          assert %{key: key, password: pw} = core.config.tls
          assert is_function(key, 0) and is_function(pw, 0)
          # the connection is made with them all the same
          {:ok, %{state: _}} = :ws_port.info(WsPort.ProducerCore.conn(core))
          assert hidden?.(:sys.get_status(holder))
          ref = Process.monitor(holder)
          :ok = :sys.terminate(holder, :crash_for_the_test)
          assert_receive {:DOWN, ^ref, :process, ^holder, :crash_for_the_test}, @wait
        end)

      # the Agent's crash report printed the core (with no format_status of
      # its own): nothing in clear
      assert log =~ "crash_for_the_test"
      assert hidden?.(log)
    end

    # a client in the user's own tree: the supervisor keeps the child
    # specification's arguments (and prints them in its reports)
    test "not in the child specifications a supervisor keeps", ctx do
      key_b64 = ctx.ec_enc_pem |> String.split("\n") |> Enum.at(2)
      token = "Bearer spec-#{System.unique_integer([:positive])}"

      hidden? = fn term ->
        printed = inspect(term, limit: :infinity, printable_limit: :infinity)
        erl = IO.iodata_to_binary(:io_lib.format(~c"~p", [term]))

        for text <- [printed, erl],
            do: refute(text =~ @password or text =~ key_b64 or text =~ token)

        true
      end

      tls = tls(ctx, cert: ctx.ec_cert_pem, key: ctx.ec_enc_pem, password: @password)
      headers = [{"Authorization", token}]
      assert_raise ExUnit.AssertionError, fn -> hidden?.({tls, headers}) end

      # the specifications themselves: ws_port_client's (a map and a
      # proplist), a `use WsPort.Client` module's, a Phoenix client's
      for spec <- [
            :ws_port_client.child_spec(%{url: ctx.url, tls: tls, headers: headers}),
            :ws_port_client.child_spec(url: ctx.url, tls: Map.to_list(tls), headers: headers),
            WsPort.Test.ReportClient.child_spec(url: ctx.url, tls: tls, headers: headers),
            WsPort.Test.PhoenixReportClient.child_spec(url: ctx.url, tls: tls, headers: headers),
            :ws_port_phoenix_client.child_spec(%{
              module: WsPort.Test.PhoenixReportClient,
              url: ctx.url,
              tls: tls,
              headers: headers
            })
          ],
          do: assert(hidden?.(spec))

      # and a real tree: the client connects with them all the same
      {:ok, sup} =
        Supervisor.start_link(
          [
            {WsPort.Test.ReportClient,
             url: ctx.url, tls: tls, headers: headers, init_arg: [test: self()]},
            :ws_port_client.child_spec(%{
              id: :erl_client,
              url: ctx.url,
              tls: tls,
              headers: headers,
              init_arg: self()
            })
          ],
          strategy: :one_for_one
        )

      assert_receive {:client, :connect, _, %{status: 101}}, @wait
      assert_receive {:ws_port_client_up, _, %{status: 101}}, @wait
      assert hidden?.(:sys.get_state(sup))
      Supervisor.stop(sup)
    end

    test "scrub/1 hides key and password in maps, proplists and wire options" do
      term = %{
        tls: %{key: "K", password: "P", cert: "C"},
        list: [tls: [key: {:PrivateKeyInfo, "K"}, password: ~c"P"]],
        wire: [{:key, "K"}, {:password, "P"}, {:cert, ["C"]}]
      }

      assert :ws_port_proto.scrub(term) == %{
               tls: %{key: :redacted, password: :redacted, cert: "C"},
               list: [tls: [key: :redacted, password: :redacted]],
               wire: [{:key, :redacted}, {:password, :redacted}, {:cert, ["C"]}]
             }
    end
  end

  defp pem_to_der(pem) do
    [_, b64, _] = String.split(pem, ~r/-----[A-Z ]+-----/, parts: 3)
    Base.decode64!(String.replace(b64, ~r/\s/, ""))
  end
end
