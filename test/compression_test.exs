Code.require_file("support/peer.exs", __DIR__)
Code.require_file("support/test_clients.exs", __DIR__)

defmodule WsPort.CompressionTest do
  @moduledoc """
  permessage-deflate (RFC 7692, the `compress` option) against real peers:
  python3-websockets (`ws_server.py --deflate`) and node `ws`
  (`ws_server.js --deflate`), each with several parameter sets (context
  takeover on and off, window bits 9..15), messages of 16 B to 256 KiB,
  text and binary, compressible and not, fragmented compressed messages;
  and a hostile server (evil_server.py `/pmd`): RSV1 on a control frame and
  on a continuation, a truncated deflate stream, an extension answer that
  was not offered or is malformed, and a decompression bomb (1 GiB of
  zeroes in about 1 MiB) that must end with 1009 while the port program's
  memory stays bounded.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.Peer

  @moduletag timeout: 600_000
  # liveness bound, not a performance threshold
  @wait 60_000

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    evil = Peer.start!(:evil)
    on_exit(fn -> Peer.stop(evil) end)

    program = System.get_env("WS_PORT_PROGRAM")
    start_opts = if program in [nil, ""], do: [], else: [port_program: Path.expand(program)]

    start_supervised!(%{
      id: :compression_driver,
      start: {:ws_port_driver, :start_link, [:ws_port_compression_driver, start_opts]}
    })

    %{evil: evil, evil_base: "ws://127.0.0.1:#{Peer.port(evil)}"}
  end

  defp connect(url, opts) do
    :ws_port.connect(url, Map.merge(%{driver: :ws_port_compression_driver, retry: false}, opts))
  end

  defp connect!(url, opts) do
    case connect(url, opts) do
      {:ok, conn} -> conn
      other -> flunk("connect #{url} failed: #{inspect(other)}")
    end
  end

  defp recv(conn) do
    receive do
      {:ws_port, ^conn, {type, data}} when type in [:text, :binary] -> {type, data}
      {:ws_port_closed, ^conn, reason} -> flunk("closed: #{inspect(reason)}")
    after
      @wait -> flunk("no message within #{@wait} ms")
    end
  end

  defp await_closed(conn) do
    receive do
      {:ws_port_closed, ^conn, reason} -> reason
      {:ws_port, ^conn, msg} -> flunk("unexpected message #{inspect(msg, limit: 5)}")
    after
      @wait -> flunk("not closed within #{@wait} ms")
    end
  end

  # JSON-like text (compressible), and random bytes (not)
  defp json(size) do
    row = ~s({"sym":"BTC-PERP","px":43125.5,"qty":0.25,"side":"buy","seq":)

    Stream.iterate(0, &(&1 + 1))
    |> Stream.map(&(row <> Integer.to_string(&1) <> "},"))
    |> Enum.reduce_while("", fn s, acc ->
      if byte_size(acc) >= size, do: {:halt, acc}, else: {:cont, acc <> s}
    end)
    |> binary_part(0, size)
  end

  @sizes [16, 100, 1000, 16_384, 70_000, 262_144]

  defp echo_all(conn) do
    for size <- @sizes, kind <- [:text, :binary, :random] do
      msg =
        case kind do
          :random -> {:binary, :crypto.strong_rand_bytes(size)}
          :text -> {:text, json(size)}
          :binary -> {:binary, json(size)}
        end

      :ok = :ws_port.send(conn, msg)
      assert recv(conn) == msg, "echo of #{size} bytes (#{kind})"
    end
  end

  # the peer's parameters, our compress option, and what must be agreed
  @python_sets [
    {~s({}), true, %{server_no_context_takeover: false, client_no_context_takeover: false}},
    {~s({"server_no_context_takeover": true, "client_no_context_takeover": true}), true,
     %{server_no_context_takeover: true, client_no_context_takeover: true}},
    {~s({"server_max_window_bits": 9, "client_max_window_bits": 9}), true,
     %{server_max_window_bits: 9, client_max_window_bits: 9}},
    {~s({"server_max_window_bits": 12, "client_max_window_bits": 15}),
     %{client_max_window_bits: 11}, %{server_max_window_bits: 12, client_max_window_bits: 11}},
    {~s({}), %{server_no_context_takeover: true, server_max_window_bits: 10},
     %{server_no_context_takeover: true, server_max_window_bits: 10}},
    {~s({}), %{client_no_context_takeover: true, server_max_window_bits: 15, level: 1},
     %{client_no_context_takeover: true, server_max_window_bits: 15}}
  ]

  @node_sets [
    {~s({}), true, %{server_no_context_takeover: false, server_max_window_bits: 15}},
    {~s({"serverNoContextTakeover": true, "clientNoContextTakeover": true}), true,
     %{server_no_context_takeover: true, client_no_context_takeover: true}},
    {~s({"serverMaxWindowBits": 9, "clientMaxWindowBits": 10}), true,
     %{server_max_window_bits: 9, client_max_window_bits: 10}},
    {~s({}), %{server_max_window_bits: 13, client_max_window_bits: 12, mem_level: 4},
     %{server_max_window_bits: 13, client_max_window_bits: 12}},
    {~s({}), %{server_no_context_takeover: true, client_no_context_takeover: true},
     %{server_no_context_takeover: true, client_no_context_takeover: true}}
  ]

  for {peer, sets} <- [python: @python_sets, node: @node_sets],
      {{params, compress, want}, k} <- Enum.with_index(sets) do
    @tag peer: peer
    test "#{peer} #{params} with compress #{inspect(compress)}: echo 16 B..256 KiB (set #{k})" do
      p = Peer.start!(unquote(peer), args: ["--deflate", unquote(params)])

      try do
        conn =
          connect!("ws://127.0.0.1:#{Peer.port(p)}/echo", %{
            compress: unquote(Macro.escape(compress))
          })

        echo_all(conn)
        {:ok, info} = :ws_port.info(conn)
        c = info.compression
        assert is_map(c), "compression not negotiated: #{inspect(info)}"

        for {key, value} <- unquote(Macro.escape(want)) do
          assert Map.fetch!(c, key) == value, "#{key}: #{inspect(c)}"
        end

        # compressible messages went smaller on the wire, both ways
        assert c.bytes_out_wire < c.bytes_out_plain
        assert c.bytes_in_wire < c.bytes_in_plain
        # the same number of plain bytes went out and came back
        assert c.bytes_out_plain == c.bytes_in_plain
        # the connection's wire byte counts include the compressed payloads
        assert info.bytes_in >= c.bytes_in_wire and info.bytes_in < c.bytes_in_plain
        assert info.msgs_spliced == 0
        :ok = :ws_port.close(conn)
      after
        Peer.stop(p)
      end
    end
  end

  for peer <- [:python, :node] do
    test "#{peer}: fragmented compressed messages, and many compressed sends" do
      p = Peer.start!(unquote(peer), args: ["--deflate", "{}"])

      try do
        conn = connect!("ws://127.0.0.1:#{Peer.port(p)}/fragmented", %{compress: true})
        assert recv(conn) == {:text, "Hello, fragmented world"}
        assert recv(conn) == {:binary, :binary.copy(:binary.list_to_bin(Enum.to_list(0..255)), 4)}

        for i <- 1..200, do: :ok = :ws_port.send(conn, {:text, json(100 + i * 37)})
        for i <- 1..200, do: assert(recv(conn) == {:text, json(100 + i * 37)})
        {:ok, %{compression: c}} = :ws_port.info(conn)
        assert c.bytes_in_wire < c.bytes_in_plain
        :ok = :ws_port.close(conn)
      after
        Peer.stop(p)
      end
    end
  end

  for peer <- [:python, :node] do
    test "#{peer}: every window size 9..15 both ways, with and without context takeover" do
      p = Peer.start!(unquote(peer), args: ["--deflate", "{}"])

      try do
        for wb <- 9..15, nct <- [false, true] do
          compress = %{
            server_max_window_bits: wb,
            client_max_window_bits: wb,
            server_no_context_takeover: nct,
            client_no_context_takeover: nct,
            threshold: 0
          }

          conn = connect!("ws://127.0.0.1:#{Peer.port(p)}/echo", %{compress: compress})

          for size <- [16, 3000, 40_000, 262_144], kind <- [:text, :binary] do
            msg = {kind, json(size)}
            :ok = :ws_port.send(conn, msg)
            assert recv(conn) == msg, "window #{wb}, no takeover #{nct}, #{size} #{kind}"
          end

          {:ok, %{compression: c}} = :ws_port.info(conn)
          assert c.server_max_window_bits == wb and c.client_max_window_bits == wb
          assert c.server_no_context_takeover == nct
          assert c.bytes_in_wire < c.bytes_in_plain
          :ok = :ws_port.close(conn)
        end
      after
        Peer.stop(p)
      end
    end
  end

  test "a server without compression: the offer is declined, messages go uncompressed" do
    p = Peer.start!(:python)

    try do
      conn = connect!("ws://127.0.0.1:#{Peer.port(p)}/echo", %{compress: true})
      :ok = :ws_port.send(conn, {:text, json(5000)})
      assert recv(conn) == {:text, json(5000)}
      assert {:ok, %{compression: false}} = :ws_port.info(conn)
      :ok = :ws_port.close(conn)
    after
      Peer.stop(p)
    end
  end

  test "the offer and the server's view of it" do
    p = Peer.start!(:python)

    try do
      conn =
        connect!("ws://127.0.0.1:#{Peer.port(p)}/headers", %{
          compress: %{server_no_context_takeover: true, client_max_window_bits: 10}
        })

      {:text, json} = recv(conn)

      assert json =~
               ~s("sec-websocket-extensions": "permessage-deflate; client_max_window_bits=10; server_no_context_takeover")

      :ok = :ws_port.close(conn)
    after
      Peer.stop(p)
    end
  end

  # Large compressed binary messages over plain ws: never spliced (their
  # bytes must go through the inflater), whatever their wire size.
  test "large compressed binary messages are inflated, not spliced" do
    p = Peer.start!(:python, args: ["--deflate", "{}"])

    try do
      conn = connect!("ws://127.0.0.1:#{Peer.port(p)}/echo", %{compress: %{threshold: 0}})

      for size <- [40_000, 65_536, 200_000, 900_000], kind <- [:random, :letters] do
        # random: deflate cannot shrink it, so the wire frame is as large;
        # 16 random letters: about half as large (Huffman codes only)
        data = :crypto.strong_rand_bytes(size)

        data =
          if kind == :letters,
            do: for(<<b <- data>>, into: "", do: <<?a + rem(b, 16)>>),
            else: data

        msg = {:binary, data}
        :ok = :ws_port.send(conn, msg)
        assert recv(conn) == msg, "#{kind} #{size}"
      end

      {:ok, info} = :ws_port.info(conn)
      assert info.msgs_spliced == 0
      assert info.compression.bytes_in_wire >= 40_000 + 65_536 + 200_000 + 900_000
      assert info.msgs_in == 8
      :ok = :ws_port.close(conn)
    after
      Peer.stop(p)
    end
  end

  test "WsPort.Client and the producer's options pass compress through" do
    p = Peer.start!(:python, args: ["--deflate", ~s({"client_no_context_takeover": true})])

    try do
      url = "ws://127.0.0.1:#{Peer.port(p)}/echo"

      {:ok, pid} =
        WsPort.Client.start(WsPort.Test.ReportClient, url,
          init_arg: [test: self()],
          compress: [threshold: 0, level: 9],
          retry: false
        )

      assert_receive {:client, :connect, ^pid, _}, @wait
      :ok = WsPort.Client.send_frame(pid, {:text, json(3000)})
      assert_receive {:client, :frame, ^pid, {:text, got}}, @wait
      assert got == json(3000)
      {:ok, conn} = WsPort.Client.connection(pid)
      {:ok, %{compression: c}} = WsPort.info(conn)
      assert c.client_no_context_takeover == true
      assert c.bytes_out_wire < c.bytes_out_plain and c.bytes_in_wire < c.bytes_in_plain
      WsPort.Client.close(pid)

      {:ok, config} =
        WsPort.ProducerOptions.validate(url: url, compress: [server_no_context_takeover: true])

      opts = WsPort.ProducerOptions.connect_opts(config)
      assert opts.compress == %{server_no_context_takeover: true}
      # what the producer passes connects and negotiates
      conn =
        connect!(
          url,
          Map.merge(Map.drop(opts, [:driver]), %{await: true, active: true, retry: false})
        )

      :ok = :ws_port.send(conn, {:text, json(2000)})
      assert recv(conn) == {:text, json(2000)}
      {:ok, %{compression: %{server_no_context_takeover: true}}} = :ws_port.info(conn)
      :ok = :ws_port.close(conn)
    after
      Peer.stop(p)
    end
  end

  # A server that completes the handshake (answering permessage-deflate when
  # `ext` is true) and then never reads: what a sender may queue is bounded
  # by the busy mark (4 MiB), counted in bytes on the wire.
  defp silent_server(ext) do
    {:ok, l} = :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, active: false, recbuf: 65536])
    {:ok, port} = :inet.port(l)
    test = self()

    pid =
      spawn_link(fn ->
        {:ok, s} = :gen_tcp.accept(l)
        head = read_head(s, "")
        [_, key] = Regex.run(~r/sec-websocket-key: *([^\r]+)\r\n/i, head)
        accept = Base.encode64(:crypto.hash(:sha, key <> "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
        extra = if ext, do: "Sec-WebSocket-Extensions: permessage-deflate\r\n", else: ""

        :ok =
          :gen_tcp.send(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" <>
              extra <> "Sec-WebSocket-Accept: #{accept}\r\n\r\n"
          )

        send(test, :handshake_done)
        # never reads again
        receive do
          :stop -> :gen_tcp.close(s)
        end
      end)

    {port, pid, l}
  end

  defp read_head(s, acc) do
    if String.contains?(acc, "\r\n\r\n") do
      acc
    else
      {:ok, d} = :gen_tcp.recv(s, 0, @wait)
      read_head(s, acc <> d)
    end
  end

  test "flow control counts compressed bytes: 64 MiB of zeroes go out to a server that does not read" do
    {port, server, l} = silent_server(true)

    conn = connect!("ws://127.0.0.1:#{port}/", %{compress: true})
    assert_receive :handshake_done, @wait
    mib = :binary.copy(<<0>>, 1024 * 1024)
    sender = Task.async(fn -> for _ <- 1..64, do: :ok = :ws_port.send(conn, {:binary, mib}) end)
    # liveness bound: 64 MiB deflate to about 64 KiB, far under the busy mark
    assert Task.await(sender, @wait)
    {:ok, %{compression: c, bytes_out: out}} = :ws_port.info(conn)
    assert c.bytes_out_plain == 64 * 1024 * 1024
    assert c.bytes_out_wire < 1024 * 1024
    assert out < 2 * 1024 * 1024
    :ok = :ws_port.close(conn)
    send(server, :stop)
    :gen_tcp.close(l)

    # the control: uncompressed, the same sends wait (busy) once ~4 MiB
    # and the socket buffers are full
    {port, server, l} = silent_server(false)
    conn = connect!("ws://127.0.0.1:#{port}/", %{compress: true})
    assert_receive :handshake_done, @wait
    sender = Task.async(fn -> for _ <- 1..64, do: :ok = :ws_port.send(conn, {:binary, mib}) end)
    assert Task.yield(sender, 3_000) == nil
    {:ok, %{compression: false}} = :ws_port.info(conn)
    Task.shutdown(sender, :brutal_kill)
    send(server, :stop)
    :gen_tcp.close(l)
  end

  # The command line client: `ws_port connect URL --compress[=...]`, stdin
  # from a file, stderr kept apart (as test/cli_test.exs runs it).
  defp cli(args, input) do
    dir = System.tmp_dir!()
    n = System.unique_integer([:positive])
    in_file = Path.join(dir, "wsp_pmd_in_#{n}")
    err_file = Path.join(dir, "wsp_pmd_err_#{n}")
    File.write!(in_file, input)

    bin =
      case System.get_env("WS_PORT_PROGRAM") do
        p when p in [nil, ""] -> Path.expand("../priv/ws_port", __DIR__)
        p -> Path.expand(p, Path.expand("..", __DIR__))
      end

    script = ~s(exec timeout 30 "$0" "$@" <"$WSP_IN" 2>"$WSP_ERR")

    {out, status} =
      System.cmd("/bin/sh", ["-c", script, bin | args],
        env: [{"WSP_IN", in_file}, {"WSP_ERR", err_file}]
      )

    err = File.read!(err_file)
    File.rm(in_file)
    File.rm(err_file)
    {status, out, err}
  end

  describe "command line" do
    test "--compress: the offer reaches the server, compressed messages come back" do
      p = Peer.start!(:python, args: ["--deflate", ~s({"server_no_context_takeover": true})])

      try do
        url = "ws://127.0.0.1:#{Peer.port(p)}"
        {0, out, _} = cli(["connect", url <> "/headers", "--compress", "--count", "1"], "")

        assert out =~
                 ~s("sec-websocket-extensions": "permessage-deflate; client_max_window_bits")

        {0, out, _} =
          cli(
            [
              "connect",
              url <> "/headers",
              "--compress=server_no_context_takeover,client_max_window_bits=9",
              "--count",
              "1"
            ],
            ""
          )

        assert out =~
                 ~s("sec-websocket-extensions": "permessage-deflate; client_max_window_bits=9; server_no_context_takeover")

        lines = for i <- 1..20, do: json(200 + i * 100)

        {0, out, err} =
          cli(
            ["connect", url <> "/echo", "--compress=threshold=0", "--count", "20"],
            Enum.join(lines, "\n") <> "\n"
          )

        assert String.split(out, "\n", trim: true) == lines, err
      after
        Peer.stop(p)
      end
    end

    test "--compress with a bad parameter is a usage error naming it" do
      {2, "", err} = cli(["connect", "ws://127.0.0.1:1/", "--compress=level=12"], "")
      assert err =~ "--compress: level needs an integer from 0 to 9"
      {2, "", err} = cli(["connect", "ws://127.0.0.1:1/", "--compress=window=9"], "")
      assert err =~ "--compress: unknown compression parameter 'window'"
    end
  end

  for peer <- [:python, :node] do
    test "#{peer} over TLS (wss): compressed both ways" do
      certs = WsPort.Test.Certs.make!()

      p =
        Peer.start!(unquote(peer),
          tls: {certs.server.cert, certs.server.key},
          args: ["--deflate", "{}"]
        )

      try do
        conn =
          connect!("wss://localhost:#{Peer.port(p)}/echo", %{
            compress: true,
            tls: %{cacertfile: certs.ca.cert}
          })

        for size <- [16, 5000, 262_144], kind <- [:text, :binary] do
          msg = {kind, json(size)}
          :ok = :ws_port.send(conn, msg)
          assert recv(conn) == msg
        end

        {:ok, %{compression: c}} = :ws_port.info(conn)
        assert c.bytes_in_wire < c.bytes_in_plain and c.bytes_out_wire < c.bytes_out_plain
        :ok = :ws_port.close(conn)
      after
        Peer.stop(p)
        WsPort.Test.Certs.cleanup(certs)
      end
    end
  end

  test "an incompressible message of exactly max_message_size arrives (its wire form is larger)" do
    p = Peer.start!(:python, args: ["--deflate", "{}"])

    try do
      max = 300_000

      conn =
        connect!("ws://127.0.0.1:#{Peer.port(p)}/echo", %{compress: true, max_message_size: max})

      msg = {:binary, :crypto.strong_rand_bytes(max)}
      :ok = :ws_port.send(conn, msg)
      assert recv(conn) == msg
      {:ok, %{compression: c}} = :ws_port.info(conn)
      assert c.bytes_in_wire > max
      :ok = :ws_port.close(conn)
    after
      Peer.stop(p)
    end
  end

  describe "hostile server" do
    test "RSV1 on a control frame is 1002", ctx do
      conn = connect!(ctx.evil_base <> "/pmd?case=rsv1_ping", %{compress: true})
      assert {:protocol_error, 1002, "RSV1 set on a control frame"} = await_closed(conn)
    end

    test "RSV1 on a continuation frame is 1002", ctx do
      conn = connect!(ctx.evil_base <> "/pmd?case=rsv1_cont", %{compress: true})
      assert {:protocol_error, 1002, "RSV1 set on a continuation frame"} = await_closed(conn)
    end

    test "the RFC 7692 examples inflate, with the shared window", ctx do
      conn = connect!(ctx.evil_base <> "/pmd?case=hello", %{compress: true})
      assert recv(conn) == {:text, "Hello"}
      assert recv(conn) == {:text, "Hello"}
      :ok = :ws_port.close(conn)
    end

    test "a truncated deflate stream is 1007", ctx do
      conn = connect!(ctx.evil_base <> "/pmd?case=truncated", %{compress: true})

      assert {:protocol_error, 1007, "truncated deflate data in a compressed message"} =
               await_closed(conn)
    end

    test "an extension answer that was not offered fails the handshake", ctx do
      path = "/pmd?case=answer&ext=" <> URI.encode_www_form("permessage-deflate")

      assert {:error, {:bad_handshake, "server chose an extension we did not offer"}} =
               connect(ctx.evil_base <> path, %{})

      path = "/pmd?case=answer&ext=" <> URI.encode_www_form("x-webkit-deflate-frame")

      assert {:error,
              {:bad_handshake,
               "permessage-deflate answer: the server chose an extension we did not offer"}} =
               connect(ctx.evil_base <> path, %{compress: true})
    end

    test "a malformed answer fails the handshake naming the parameter", ctx do
      cases = [
        {"permessage-deflate; server_max_window_bits=99", %{},
         "server_max_window_bits is not a number 8..15"},
        {"permessage-deflate; client_max_window_bits", %{},
         "client_max_window_bits needs a value 8..15"},
        {"permessage-deflate; server_no_context_takeover=1", %{},
         "server_no_context_takeover takes no value"},
        {"permessage-deflate; client_no_context_takeover; client_no_context_takeover", %{},
         "client_no_context_takeover given twice"},
        {"permessage-deflate; mystery", %{}, "unknown parameter"},
        {"permessage-deflate, permessage-deflate", %{},
         "more than one extension (only permessage-deflate was offered)"},
        {"permessage-deflate; server_max_window_bits=12", %{server_max_window_bits: 10},
         "server_max_window_bits larger than offered"},
        {"permessage-deflate", %{server_no_context_takeover: true},
         "server_no_context_takeover was offered but not answered"}
      ]

      for {ext, compress, why} <- cases do
        path = "/pmd?case=answer&ext=" <> URI.encode_www_form(ext)

        assert {:error, {:bad_handshake, detail}} =
                 connect(ctx.evil_base <> path, %{compress: compress})

        assert detail == "permessage-deflate answer: " <> why
      end
    end

    test "a decompression bomb ends with 1009 and the port's memory stays bounded", ctx do
      # a port program of its own: its peak RSS (VmHWM) is this test's
      program = System.get_env("WS_PORT_PROGRAM")
      start_opts = if program in [nil, ""], do: [], else: [port_program: Path.expand(program)]
      asan? = program != nil and String.contains?(program, "asan")

      start_supervised!(%{
        id: :bomb_driver,
        start: {:ws_port_driver, :start_link, [:ws_port_bomb_driver, start_opts]}
      })

      %{os_pid: os_pid} = :ws_port_driver.program(:ws_port_bomb_driver)
      max = 1024 * 1024
      path = "/pmd?case=bomb&size=#{1024 * 1024 * 1024}"

      conn =
        connect!(ctx.evil_base <> path, %{
          compress: true,
          max_message_size: max,
          driver: :ws_port_bomb_driver
        })

      line = Peer.await_line(ctx.evil, "BOMB #{path} ", @wait)
      [_, _, wire] = String.split(line, " ")
      # about 1 MiB on the wire inflating to 1 GiB
      assert String.to_integer(wire) < 2 * 1024 * 1024

      assert {:protocol_error, 1009, "message exceeds max_message_size once inflated"} =
               await_closed(conn)

      # inflating it all would take 1 GiB; the port stopped after 1 MiB
      # (a loose bound: the sanitizer build's allocator keeps more)
      limit = if asan?, do: 400 * 1024, else: 64 * 1024
      peak = status_kib(os_pid, "VmHWM")
      IO.puts("\n  [compression] bomb: port VmHWM #{div(peak, 1024)} MiB")
      assert peak < limit, "port program VmHWM #{peak} KiB"
      assert status_kib(os_pid, "VmRSS") < limit
    end
  end

  defp status_kib(os_pid, field) do
    "/proc/#{os_pid}/status"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      key = field <> ":"

      case String.split(line) do
        [^key, kib, "kB"] -> String.to_integer(kib)
        _ -> nil
      end
    end)
  end
end
