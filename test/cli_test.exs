Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.CLITest do
  @moduledoc """
  The port program as a command line client (`ws_port connect URL [options]`),
  driven as a user drives it: arguments, stdin, stdout, stderr and the exit
  status, against the real test servers of test/peers/ on 127.0.0.1 (ws and
  wss, certificates made at test time).

  `WS_PORT_PROGRAM=priv/ws_port.asan` runs them on the ASan/UBSan build.
  Each run goes through `/bin/sh` so that stdin comes from a file (or
  /dev/null) and stderr is kept apart from stdout; `timeout` bounds every run.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.{Certs, JSON, Peer}

  @moduletag timeout: 180_000
  # WS_PORT_PROGRAM=priv/ws_port.asan runs the same tests on the sanitizer
  # build (`make asan`): any report lands on stderr and fails the assertions.
  defp bin do
    case System.get_env("WS_PORT_PROGRAM") do
      nil -> Path.expand("../priv/ws_port", __DIR__)
      p -> Path.expand(p, Path.expand("..", __DIR__))
    end
  end

  # a liveness bound for one run, not a performance threshold
  @run_timeout_s 30

  setup_all do
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)
    ws = Peer.start!(:python)
    trusted = Peer.start!(:python, tls: {certs.server.cert, certs.server.key})
    untrusted = Peer.start!(:python, tls: {certs.untrusted.cert, certs.untrusted.key})
    evil = Peer.start!(:evil)

    on_exit(fn ->
      Enum.each([ws, trusted, untrusted, evil], &Peer.stop/1)
    end)

    tmp = Path.join(System.tmp_dir!(), "ws_port_cli_#{System.unique_integer([:positive])}")
    File.mkdir_p!(tmp)
    on_exit(fn -> File.rm_rf!(tmp) end)

    %{certs: certs, ws: ws, trusted: trusted, untrusted: untrusted, evil: evil, tmp: tmp}
  end

  # Runs `ws_port args...` with `input` (binary, or nil for /dev/null) on
  # stdin, killed (status 124) after timeout_s. Returns {exit_status, stdout,
  # stderr}.
  defp run(ctx, args, input \\ nil, timeout_s \\ @run_timeout_s, env \\ []) do
    n = System.unique_integer([:positive])

    in_file =
      case input do
        nil ->
          "/dev/null"

        data ->
          f = Path.join(ctx.tmp, "in_#{n}")
          File.write!(f, data)
          f
      end

    err_file = Path.join(ctx.tmp, "err_#{n}")
    script = ~s(exec timeout #{timeout_s} "$0" "$@" <"$WSP_IN" 2>"$WSP_ERR")

    {out, status} =
      System.cmd("/bin/sh", ["-c", script, bin() | args],
        env: [{"WSP_IN", in_file}, {"WSP_ERR", err_file} | env]
      )

    {status, out, File.read!(err_file)}
  end

  defp url(peer, path, scheme \\ "ws", host \\ "127.0.0.1"),
    do: "#{scheme}://#{host}:#{Peer.port(peer)}#{path}"

  defp tag, do: "cli#{System.unique_integer([:positive])}"

  # a TCP port on 127.0.0.1 where nothing listens
  defp closed_port do
    {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(l)
    :ok = :gen_tcp.close(l)
    port
  end

  describe "usage" do
    test "--help prints the full usage with the exit statuses", ctx do
      {0, out, _} = run(ctx, ["--help"])
      assert out =~ "ws_port connect URL [options]"
      assert out =~ "--retry POLICY"
      assert out =~ "Exit status"
      assert out =~ "7  --retry gave up"
      {0, out2, _} = run(ctx, ["connect", "--help"])
      assert out2 =~ "--binary-format base64|hex"
    end

    test "--version", ctx do
      {0, out, _} = run(ctx, ["--version"])
      assert out =~ ~r/^ws_port \d+\.\d+\.\d+\n$/
    end

    test "bad arguments exit 2 with a message", ctx do
      {2, "", err} = run(ctx, ["connect", "ws://127.0.0.1:1/", "--bogus"])
      assert err =~ "unknown option '--bogus'"
      {2, _, err} = run(ctx, ["connect"])
      assert err =~ "a URL is needed"
      {2, _, err} = run(ctx, ["connect", "http://127.0.0.1/"])
      assert err =~ "ws:// or wss://"
      {2, _, err} = run(ctx, ["connect", "ws://127.0.0.1:1/", "--retry", "sometimes"])
      assert err =~ "--retry needs"
      {2, _, err} = run(ctx, ["connect", "ws://127.0.0.1:1/", "-H", "no colon"])
      assert err =~ "Name: value"
      {2, _, err} = run(ctx, ["connect", "ws://127.0.0.1:1/", "--cert", "x.pem"])
      assert err =~ "--cert and --key"
      {2, _, err} = run(ctx, ["connect", "ws://[::1/"])
      assert err =~ "invalid URL"
    end
  end

  describe "started the wrong way" do
    test "a URL without the connect command: a short note naming the command, exit 2", ctx do
      {2, "", err} = run(ctx, ["ws://127.0.0.1:1/echo"])
      assert err =~ "a URL needs the connect command:\n  ws_port connect ws://127.0.0.1:1/echo\n"
      assert length(String.split(err, "\n", trim: true)) <= 3
      {2, "", err} = run(ctx, ["--bogus"])
      assert err =~ "unknown argument '--bogus'"
      assert length(String.split(err, "\n", trim: true)) <= 3
    end

    test "no arguments and text on stdin: how to use it on stderr, nothing on stdout, exit 2",
         ctx do
      # "hell" is no sane {packet,4} length (1.7 GB)
      {2, "", err} = run(ctx, [], "hello\n")
      assert err =~ "stdin does not start with a {packet,4} command"
      assert err =~ "ws_port connect URL [options]"
      # a sane length, but a payload that is no term
      {2, "", err} = run(ctx, [], <<0, 0, 0, 3, "hi\n">>)
      assert err =~ "(it starts with bytes 00 00 00 03 68 69 0a)"
      # too short to be a packet at all
      {2, "", _} = run(ctx, [], "hi\n")
    end

    test "no arguments and a terminal on stdin: how to use it, exit 2", _ctx do
      # script(1) gives the program a pseudo-terminal; `timeout`: a program
      # waiting for commands on the terminal would be killed (124)
      {out, 0} =
        System.cmd("timeout", [
          "#{@run_timeout_s}",
          "script",
          "-qec",
          ~s("#{bin()}"; echo "EXIT=$?"),
          "/dev/null"
        ])

      assert out =~ "stdin is a terminal"
      assert out =~ "ws_port connect URL [options]"
      assert out =~ "EXIT=2"
    end

    test "no arguments and {packet,4} commands: the port program answers them", ctx do
      # what a BEAM would send; the answer is a {packet,4} term, EOF exits 0
      for args <- [[], ["port"]] do
        cmd = :erlang.term_to_binary({:stats, 5})
        {0, out, ""} = run(ctx, args, <<byte_size(cmd)::32, cmd::binary>>)
        assert <<len::32, term::binary-size(len)>> = out
        assert {:error, 5, {_, _}} = :erlang.binary_to_term(term)
      end
    end
  end

  describe "messages" do
    test "stdin lines are sent as text, replies printed one per line", ctx do
      {0, out, err} =
        run(
          ctx,
          ["connect", url(ctx.ws, "/echo?tag=#{tag()}"), "--count", "4"],
          "hello\nwörld\n\nlast"
        )

      assert out == "hello\nwörld\n\nlast\n"
      assert err =~ ~r/connected to ws:.*\(HTTP 101\)/
      assert err =~ "closed: closed with 1000"
    end

    test "end of stdin closes with 1000 and exits 0", ctx do
      t = tag()
      {0, _out, err} = run(ctx, ["connect", url(ctx.ws, "/echo?tag=#{t}")], "one\n")
      assert err =~ "closed: closed with 1000"
      assert {1000, ""} = Peer.await_closed(ctx.ws, "/echo?tag=#{t}")
    end

    test "the end of stdin waits for the replies before closing", ctx do
      # python3-websockets drops what it would send once our close has
      # arrived: closing at once lost both echoes
      t = tag()
      {0, out, _} = run(ctx, ["connect", url(ctx.ws, "/echo?tag=#{t}")], "hi\nthere\n")
      assert out == "hi\nthere\n"
      assert {1000, ""} = Peer.await_closed(ctx.ws, "/echo?tag=#{t}")
    end

    test "a line that is not UTF-8 is refused, naming it; --count does not wait on", ctx do
      # line 1 is sent and its reply printed; line 2 ends the input (exit
      # 10), so --count 2 cannot wait for a second reply that never comes
      {10, out, err} =
        run(
          ctx,
          ["connect", url(ctx.ws, "/echo"), "--count", "2"],
          <<"ok\n", 0xFF, 0xFE, ?\n, "never sent\n">>
        )

      assert out == "ok\n"
      assert err =~ "stdin line 2 is not valid UTF-8 (--binary sends lines as binary messages)"
      assert err =~ "closed: closed with 1000"
      # the refused line alone: --count 1 used to wait for ever (killed: 124)
      {10, "", err} =
        run(ctx, ["connect", url(ctx.ws, "/echo"), "--count", "1"], <<0xFF, ?\n>>, 20)

      assert err =~ "stdin line 1 is not valid UTF-8"
      # with --binary it is a binary message
      {0, "//4=\n", _} =
        run(ctx, ["connect", url(ctx.ws, "/echo"), "--binary", "--count", "1"], <<0xFF, 0xFE>>)
    end

    test "a line longer than --max-message-size is refused without reading it whole", ctx do
      # 16 MiB without a newline in a file; after the run the file's offset
      # (shared with the program's stdin) says how much of it was read
      big = Path.join(ctx.tmp, "big_#{System.unique_integer([:positive])}")
      File.write!(big, :binary.copy("x", 16 * 1024 * 1024))
      err_file = big <> ".err"

      script =
        ~s{exec 3<"$WSP_IN"; timeout #{@run_timeout_s} "$0" "$@" <&3 2>"$WSP_ERR"; } <>
          ~s{echo "status $?"; echo "unread $(cat <&3 | wc -c)"}

      {out, 0} =
        System.cmd(
          "/bin/sh",
          ["-c", script, bin(), "connect", url(ctx.ws, "/echo"), "--max-message-size", "1000"],
          env: [{"WSP_IN", big}, {"WSP_ERR", err_file}]
        )

      err = File.read!(err_file)
      assert out =~ "status 10\n"
      [_, unread] = Regex.run(~r/unread (\d+)/, out)
      # at most a few reads of 64 KiB, not the 16 MiB
      assert String.to_integer(unread) >= 15 * 1024 * 1024
      assert err =~ "stdin line 1 is longer than --max-message-size (1000 bytes): not sent"
      # a line within the limit still goes
      {0, "abc\n", _} =
        run(ctx, ["connect", url(ctx.ws, "/echo"), "--max-message-size", "3"], "abc\n")
    end

    test "binary messages are printed as base64 (default) or hex", ctx do
      path = "/send?n=3&size=4&type=binary&tag=#{tag()}"
      {0, out, _} = run(ctx, ["connect", url(ctx.ws, path), "--count", "3"])
      assert out == "AAAAAA==\nAQEBAQ==\nAgICAg==\n"

      path = "/send?n=2&size=3&type=binary&tag=#{tag()}"

      {0, out, _} =
        run(ctx, ["connect", url(ctx.ws, path), "--count", "2", "--binary-format", "hex"])

      assert out == "000000\n010101\n"
    end

    test "--binary sends lines as binary messages", ctx do
      {0, out, _} =
        run(ctx, ["connect", url(ctx.ws, "/echo"), "--binary", "--count", "2"], "abc\nhi\n")

      assert out == "YWJj\naGk=\n"
    end

    test "--count N exits 0 after N messages, closing with 1000", ctx do
      t = tag()
      path = "/send?n=50&size=10&type=text&tag=#{t}"
      {0, out, _} = run(ctx, ["connect", url(ctx.ws, path), "--count", "5"])

      assert String.split(out, "\n", trim: true) ==
               ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd", "eeeeeeeeee"]

      assert {1000, ""} = Peer.await_closed(ctx.ws, path)
    end

    test "--echo sends every message back, same type", ctx do
      # /fragmented sends a text and a binary message, then echoes: what we
      # echo comes back again, so messages 3 and 4 are our echoes.
      {0, out, _} = run(ctx, ["connect", url(ctx.ws, "/fragmented"), "--echo", "--count", "4"])
      bin = Base.encode64(:binary.copy(:binary.list_to_bin(Enum.to_list(0..255)), 4))
      text = "Hello, fragmented world"
      assert String.split(out, "\n", trim: true) == [text, bin, text, bin]
    end

    test "-H headers and --subprotocol reach the server", ctx do
      {0, out, err} =
        run(ctx, [
          "connect",
          url(ctx.ws, "/headers"),
          "-H",
          "X-Ws-Port-Test: from the cli",
          "--header=X-Second:two",
          "--subprotocol",
          "chat.v1",
          "--count",
          "1"
        ])

      seen = JSON.decode!(String.trim_trailing(out, "\n"))
      assert seen["x-ws-port-test"] == "from the cli"
      assert seen["x-second"] == "two"
      assert seen["sec-websocket-protocol"] == "chat.v1"
      assert err =~ "subprotocol chat.v1"
    end

    test "--max-message-size: a bigger message is a protocol error (exit 6)", ctx do
      path = "/send?n=1&size=5000&type=text&tag=#{tag()}"
      {6, "", err} = run(ctx, ["connect", url(ctx.ws, path), "--max-message-size", "1000"])
      assert err =~ "protocol error"
      assert err =~ "1009"
    end

    test "--ping-interval prints pong round trips", ctx do
      # stdin stays open for a while (a pipe), then ends
      {err, 0} =
        System.cmd("/bin/sh", [
          "-c",
          ~s[(sleep 1; echo x) | timeout #{@run_timeout_s} "$0" "$@" 2>&1 >/dev/null],
          bin(),
          "connect",
          url(ctx.ws, "/echo"),
          "--ping-interval",
          "200"
        ])

      assert Regex.scan(~r/pong: rtt \d+\.\d{3} ms/, err) |> length() >= 2
    end
  end

  describe "events and exit statuses" do
    test "--timestamps prefixes events; --quiet silences them", ctx do
      {0, _, err} = run(ctx, ["connect", url(ctx.ws, "/echo"), "--timestamps"], "x\n")
      assert err =~ ~r/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ws_port: connected to /m
      {0, _, ""} = run(ctx, ["connect", url(ctx.ws, "/echo"), "--quiet"], "x\n")
    end

    test "server closes with 1000: exit 0; with another code: exit 8", ctx do
      # --count: the end of stdin (/dev/null) does not close first
      {0, _, err} =
        run(ctx, ["connect", url(ctx.ws, "/close?code=1000&reason=done"), "--count", "1"])

      assert err =~ ~s(closed by the server with 1000 "done")

      {8, _, err} =
        run(ctx, ["connect", url(ctx.ws, "/close?code=4001&reason=go%20away"), "--echo"])

      assert err =~ ~s(closed by the server with 4001 "go away")
    end

    test "control characters in the server's close reason are printed escaped", ctx do
      # ESC [2J (clear screen), a newline, C1 CSI (U+009B), a backslash: the
      # reason reaches stderr as \xNN escapes; printable UTF-8 stays as is
      reason = URI.encode_www_form("\e[2Jred\nline\u009Bx\\é")

      {8, "", err} =
        run(ctx, ["connect", url(ctx.ws, "/close?code=4001&reason=#{reason}"), "--echo"])

      assert err =~ ~S(closed by the server with 4001 "\x1b[2Jred\x0aline\xc2\x9bx\\é")
      refute err =~ <<27>>
      refute err =~ "\u009B"
      assert length(String.split(err, "\n", trim: true)) == 2
    end

    test "refused upgrade: exit 5 with the HTTP status", ctx do
      {5, "", err} = run(ctx, ["connect", url(ctx.ws, "/status?code=401")])
      assert err =~ "upgrade refused: HTTP 401"
    end

    test "connection refused: exit 3", ctx do
      {3, "", err} = run(ctx, ["connect", "ws://127.0.0.1:#{closed_port()}/"])
      assert err =~ "connection refused (econnrefused)"
    end

    test "a DNS failure exits 3 as soon as the answer is in", ctx do
      # No wall-clock threshold: the connect timeout (10 min) and lws' own
      # timer (the program used to sleep in poll until it fired, 30 s after
      # the answer) are both far beyond the 20 s this run is given; the
      # answer (NXDOMAIN for the reserved .invalid TLD, or a resolver
      # timeout after 2 x 2 s without one) comes well within it. Killed by
      # `timeout`, the status would be 124.
      {3, "", err} =
        run(
          ctx,
          ["connect", "ws://no-such-host.invalid/", "--connect-timeout", "600000"],
          nil,
          20
        )

      assert err =~ "closed: DNS lookup failed: "
    end

    test "--retry constant:100:3 against a closed port: three retries, then exit 7", ctx do
      {7, "", err} =
        run(ctx, ["connect", "ws://127.0.0.1:#{closed_port()}/", "--retry", "constant:100:3"])

      retries =
        Regex.scan(
          ~r/^ws_port: disconnected: connection refused \(econnrefused\); retrying in (\d+) ms \(attempt (\d)\)$/m,
          err
        )

      assert Enum.map(retries, fn [_, _, a] -> a end) == ["1", "2", "3"]
      # 100 ms +- 10% jitter
      assert Enum.all?(retries, fn [_, ms, _] -> String.to_integer(ms) in 90..110 end)
      assert err =~ "giving up after 3 retries"
    end

    test "--retry exponential gives up on a refused upgrade it retries (503)", ctx do
      {7, "", err} =
        run(ctx, ["connect", url(ctx.ws, "/status?code=503"), "--retry", "exponential:50:200:2:2"])

      assert length(Regex.scan(~r/retrying in \d+ ms/, err)) == 2
      # 401 is not retried: the status decides
      {5, "", err} =
        run(ctx, ["connect", url(ctx.ws, "/status?code=401"), "--retry", "exponential:50:200:2:2"])

      refute err =~ "retrying"
    end

    test "--retry follows retry_on's default for server closes", ctx do
      # 1000: final, exit 0 without a retry
      {0, _, err} =
        run(ctx, [
          "connect",
          url(ctx.ws, "/close?code=1000&reason=done"),
          "--echo",
          "--retry",
          "constant:50:2"
        ])

      refute err =~ "retrying"
      assert err =~ ~s(closed by the server with 1000 "done")
      # 1012 (service restart): retried; the server then refuses (401)
      path =
        "/close_frame?code=1012&reason=restart&times=1&tag=#{System.unique_integer([:positive])}"

      {5, _, err} =
        run(ctx, ["connect", url(ctx.evil, path), "--echo", "--retry", "constant:50:2"])

      assert err =~
               ~r/disconnected: closed by the server with 1012 "restart"; retrying in \d+ ms \(attempt 1\)/

      assert err =~ "upgrade refused: HTTP 401"
    end
  end

  describe "client certificate" do
    @key_password "cli-Passw0rd s3cret"

    # a server that requires a client certificate signed by the test CA, and
    # the client key encrypted with openssl (PKCS#8, AES-256) at test time
    setup ctx do
      certs = ctx.certs
      enc = Path.join(ctx.tmp, "client_enc_#{System.unique_integer([:positive])}.pem")

      {_, 0} =
        System.cmd(
          "openssl",
          ~w(pkcs8 -topk8 -v2 aes-256-cbc -in #{certs.client.key} -out #{enc} -passout) ++
            ["pass:#{@key_password}"],
          stderr_to_stdout: true
        )

      assert File.read!(enc) =~ "BEGIN ENCRYPTED PRIVATE KEY"

      peer =
        Peer.start!(:python, tls: {certs.server.cert, certs.server.key}, client_ca: certs.ca.cert)

      on_exit(fn -> Peer.stop(peer) end)

      args = [
        "connect",
        url(peer, "/echo", "wss", "localhost"),
        "--cacert",
        certs.ca.cert,
        "--cert",
        certs.client.cert,
        "--key",
        enc,
        "--count",
        "1"
      ]

      %{client_args: args}
    end

    test "an encrypted --key with --key-password pass:, env: or file:", ctx do
      pw_file = Path.join(ctx.tmp, "pw_#{System.unique_integer([:positive])}")
      File.write!(pw_file, @key_password <> "\n")

      for {source, env} <- [
            {"pass:" <> @key_password, []},
            {"env:WSP_KEY_PW", [{"WSP_KEY_PW", @key_password}]},
            {"file:" <> pw_file, []}
          ] do
        {0, out, err} =
          run(ctx, ctx.client_args ++ ["--key-password", source], "mine\n", @run_timeout_s, env)

        assert out == "mine\n", "#{source |> String.split(":") |> hd}: #{err}"
        assert err =~ "connected to wss://"
        refute err =~ @key_password
      end
    end

    test "without the password, or a wrong one: exit 4, never printing it", ctx do
      {4, "", err} = run(ctx, ctx.client_args, "x\n")
      assert err =~ "TLS failure"
      assert err =~ "the key is encrypted and no password was given"

      {4, "", err} = run(ctx, ctx.client_args ++ ["--key-password", "pass:not-it"], "x\n")
      assert err =~ "wrong password"
      refute err =~ "not-it"

      # the server requires a certificate: without one it drops the
      # connection (TLS 1.3: after the client's handshake, before the upgrade)
      args = Enum.take(ctx.client_args, 4) ++ ["--count", "1"]
      {status, "", err} = run(ctx, args, "x\n")
      assert status in [3, 4], err
      refute err =~ "connected to"
    end

    test "--key-password usage errors exit 2 without quoting the value", ctx do
      url = "wss://127.0.0.1:1/"
      {2, "", err} = run(ctx, ["connect", url, "--key-password", "pass:abc"])
      assert err =~ "--key-password goes with --cert and --key"

      {2, "", err} =
        run(ctx, [
          "connect",
          url,
          "--cert",
          "c.pem",
          "--key",
          "k.pem",
          "--key-password",
          "hunter2"
        ])

      assert err =~ "pass:TEXT, env:VAR or file:PATH"
      refute err =~ "hunter2"

      {2, "", err} =
        run(ctx, [
          "connect",
          url,
          "--cert",
          "c",
          "--key",
          "k",
          "--key-password",
          "env:WSP_NO_SUCH"
        ])

      assert err =~ "WSP_NO_SUCH is not set"

      {2, "", err} =
        run(ctx, ["connect", url, "--cert", "c", "--key", "k", "--key-password", "pass:"])

      assert err =~ "1 to 1024 bytes"
    end
  end

  describe "TLS" do
    test "untrusted certificate: exit 4, naming the verify failure", ctx do
      {4, "", err} = run(ctx, ["connect", url(ctx.untrusted, "/echo", "wss")])
      assert err =~ "TLS failure: certificate verify failed"
    end

    test "--insecure connects to the untrusted server", ctx do
      {0, out, err} =
        run(
          ctx,
          ["connect", url(ctx.untrusted, "/echo", "wss"), "--insecure", "--count", "1"],
          "hi\n"
        )

      assert out == "hi\n"
      assert err =~ "connected to wss://"
    end

    test "--cacert verifies the server; a wrong --server-name fails", ctx do
      ca = ctx.certs.ca.cert

      {0, "hi\n", _} =
        run(
          ctx,
          [
            "connect",
            url(ctx.trusted, "/echo", "wss", "localhost"),
            "--cacert",
            ca,
            "--count",
            "1"
          ],
          "hi\n"
        )

      {4, "", err} =
        run(ctx, [
          "connect",
          url(ctx.trusted, "/echo", "wss"),
          "--cacert",
          ca,
          "--server-name",
          "other.example"
        ])

      assert err =~ "certificate verify failed"
    end

    test "a certificate without subjectAltName fails for its CN; one with the SAN works", ctx do
      c = ctx.certs.nosan
      nosan = Peer.start!(:python, tls: {c.cert, c.key})
      on_exit(fn -> Peer.stop(nosan) end)
      ca = ctx.certs.ca.cert

      {4, "", err} =
        run(ctx, ["connect", url(nosan, "/echo", "wss", "localhost"), "--cacert", ca])

      assert err =~ "TLS failure: certificate verify failed: hostname mismatch"

      {0, "san\n", _} =
        run(
          ctx,
          [
            "connect",
            url(ctx.trusted, "/echo", "wss", "localhost"),
            "--cacert",
            ca,
            "--count",
            "1"
          ],
          "san\n"
        )
    end
  end
end
