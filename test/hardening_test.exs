Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.HardeningTest do
  @moduledoc """
  Hostile input to the port program, from both sides.

  Network side: test/peers/evil_server.py (hand-made handshakes and frames)
  sends what a malicious server would. Each case must end with the right
  reason for that connection (and the right close code on the wire, which
  the server logs as `CLOSE <path> <code>`), while ANOTHER connection in the
  same port program keeps echoing against the normal echo server
  (test/peers/ws_server.py `/echo`), and the port program's RSS stays below
  a loose sanity bound.

  BEAM side: garbage packets written straight to the port with
  `Port.command/2` must be refused with `{error, Id, {What, Detail}}` (seen
  by the owner as `{ws_port_error, Conn, _}` when Id is one of its
  connections, logged as a warning by the driver when Id is 0) without
  harming the other connection.

  All connections go through one dedicated driver (so one port program, and
  RSS measured on that program alone). `WS_PORT_PROGRAM=priv/ws_port.asan`
  runs the same tests against the sanitizer build (`make asan`).
  """
  use ExUnit.Case, async: false
  import Bitwise
  import ExUnit.CaptureLog

  alias WsPort.Test.{Certs, Peer}

  @moduletag timeout: 300_000
  # liveness bound, not a performance threshold
  @wait 20_000
  # A loose sanity bound on the port program's resident memory (VmRSS). The
  # largest legitimate buffer in these tests is one 64 MiB partial message
  # (the default max_message_size); anything unbounded blows far past this.
  # The sanitizer build carries ASan's shadow memory and quarantine.
  @rss_limit_kib 200 * 1024
  @rss_limit_asan_kib 600 * 1024

  setup_all do
    # capture_log needs Elixir's logger (the driver logs refused commands)
    {:ok, _} = Application.ensure_all_started(:logger)
    {:ok, _} = Application.ensure_all_started(:ws_port)
    evil = Peer.start!(:evil)
    echo = Peer.start!(:python)
    certs = Certs.make!()
    evil_tls = Peer.start!(:evil, args: ["--tls", certs.server.cert, certs.server.key])
    on_exit(fn -> Peer.stop(evil) end)
    on_exit(fn -> Peer.stop(echo) end)
    on_exit(fn -> Peer.stop(evil_tls) end)
    on_exit(fn -> Certs.cleanup(certs) end)

    program = System.get_env("WS_PORT_PROGRAM")
    start_opts = if program in [nil, ""], do: [], else: [port_program: Path.expand(program)]

    driver =
      start_supervised!(%{
        id: :hardening_driver,
        start: {:ws_port_driver, :start_link, [:ws_port_hardening_driver, start_opts]}
      })

    asan? = program != nil and String.contains?(program, "asan")

    %{
      evil: evil,
      echo: echo,
      driver: driver,
      evil_base: "ws://127.0.0.1:#{Peer.port(evil)}",
      evil_tls: evil_tls,
      evil_tls_base: "wss://127.0.0.1:#{Peer.port(evil_tls)}",
      ca: certs.ca.cert,
      echo_base: "ws://127.0.0.1:#{Peer.port(echo)}",
      rss_limit: if(asan?, do: @rss_limit_asan_kib, else: @rss_limit_kib)
    }
  end

  setup ctx do
    # the bystander: a normal echo connection in the same port program
    other = connect!(ctx.echo_base <> tagged("/echo"))
    assert_echo(other)
    on_exit(fn -> :ws_port.close(other) end)
    %{other: other, os_pid: os_pid(ctx.driver)}
  end

  ## helpers

  defp tagged(path) do
    sep = if String.contains?(path, "?"), do: "&", else: "?"
    "#{path}#{sep}tag=#{System.unique_integer([:positive])}"
  end

  # retry: false: each test is about one connection's fate (reconnection
  # is on by default)
  defp connect(url, opts \\ %{}) do
    :ws_port.connect(url, Map.merge(%{driver: :ws_port_hardening_driver, retry: false}, opts))
  end

  defp connect!(url, opts \\ %{}) do
    case connect(url, opts) do
      {:ok, conn} -> conn
      other -> flunk("connect #{url} failed: #{inspect(other)}")
    end
  end

  defp assert_echo(conn, msg \\ nil) do
    msg = msg || "ping #{System.unique_integer([:positive])}"
    :ok = :ws_port.send(conn, {:text, msg})

    receive do
      {:ws_port, ^conn, {:text, ^msg}} -> :ok
      {:ws_port_closed, ^conn, reason} -> flunk("the other connection closed: #{inspect(reason)}")
    after
      @wait -> flunk("the other connection did not echo within #{@wait} ms")
    end
  end

  defp port_of(driver) do
    %{port: port} = :ws_port_driver.program(driver)
    port
  end

  defp os_pid(driver) do
    {:os_pid, pid} = Port.info(port_of(driver), :os_pid)
    pid
  end

  # A field of /proc/<pid>/status in KiB: "VmRSS" (now) or "VmHWM" (peak).
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

  # The port program is the same process as at the start of the test (it did
  # not crash and restart), it echoes, and its memory is bounded: both the
  # resident set now and its peak (VmHWM) since the program started.
  defp assert_healthy(ctx) do
    assert os_pid(ctx.driver) == ctx.os_pid, "the port program restarted"
    assert_echo(ctx.other)
    rss = status_kib(ctx.os_pid, "VmRSS")
    peak = status_kib(ctx.os_pid, "VmHWM")
    assert rss < ctx.rss_limit, "port program VmRSS #{rss} KiB >= #{ctx.rss_limit} KiB"
    assert peak < ctx.rss_limit, "port program VmHWM #{peak} KiB >= #{ctx.rss_limit} KiB"
    {rss, peak}
  end

  defp await_closed(conn, timeout \\ @wait) do
    receive do
      {:ws_port_closed, ^conn, reason} -> reason
    after
      timeout -> flunk("no ws_port_closed within #{timeout} ms")
    end
  end

  # The code the evil server saw in the client's close frame.
  defp server_close_code(ctx, path) do
    line = Peer.await_line(ctx.evil, "CLOSE #{path} ", @wait)
    String.replace_prefix(line, "CLOSE #{path} ", "")
  end

  ## malicious servers

  test "a frame announcing 2^63-1 bytes fails with 1009", ctx do
    path = tagged("/len63")
    conn = connect!(ctx.evil_base <> path)
    assert {:protocol_error, 1009, _} = await_closed(conn)
    assert server_close_code(ctx, path) == "1009"
    assert_healthy(ctx)
  end

  test "a message one byte over max_message_size fails with 1009", ctx do
    size = 100_000
    path = tagged("/over_max?size=#{size}")
    conn = connect!(ctx.evil_base <> path, %{max_message_size: size - 1})
    assert {:protocol_error, 1009, _} = await_closed(conn)
    assert server_close_code(ctx, path) == "1009"
    assert_healthy(ctx)
  end

  test "a message exactly max_message_size bytes is delivered", ctx do
    size = 100_000
    path = tagged("/over_max?size=#{size}")
    conn = connect!(ctx.evil_base <> path, %{max_message_size: size})
    assert_receive {:ws_port, ^conn, {:binary, data}}, @wait
    assert data == :binary.copy(<<0xAB>>, size)
    :ok = :ws_port.close(conn)
    assert server_close_code(ctx, path) == "1000"
    assert_healthy(ctx)
  end

  test "endless fragments hit max_message_size (1 MiB) with 1009", ctx do
    path = tagged("/endless_fragments?size=256")
    conn = connect!(ctx.evil_base <> path, %{max_message_size: 1 <<< 20})
    assert {:protocol_error, 1009, _} = await_closed(conn)
    assert server_close_code(ctx, path) == "1009"
    sent = Peer.await_line(ctx.evil, "SENT #{path} ", @wait)
    # 4096 fragments of 256 bytes fill 1 MiB; the server stops soon after
    assert String.to_integer(List.last(String.split(sent))) < 200_000
    assert_healthy(ctx)
  end

  test "endless fragments with the default max_message_size (64 MiB) keep RSS bounded", ctx do
    path = tagged("/endless_fragments?size=4096")
    conn = connect!(ctx.evil_base <> path)
    assert {:protocol_error, 1009, _} = await_closed(conn, 60_000)
    assert server_close_code(ctx, path) == "1009"
    {rss, peak} = assert_healthy(ctx)

    IO.puts(
      "\n  [hardening] after a 64 MiB partial message: VmRSS #{div(rss, 1024)} MiB, " <>
        "peak (VmHWM) #{div(peak, 1024)} MiB"
    )
  end

  test "a ping flood is survived; the connection still delivers and closes cleanly", ctx do
    path = tagged("/ping_flood?n=5000")
    conn = connect!(ctx.evil_base <> path)
    # the other connection is served while the flood is on
    assert_echo(ctx.other)
    assert_receive {:ws_port, ^conn, {:text, "flood done"}}, @wait
    :ok = :ws_port.close(conn)
    assert server_close_code(ctx, path) == "1000"
    pongs = Peer.await_line(ctx.evil, "PONGS #{path} ", @wait)
    IO.puts("\n  [hardening] #{pongs}")
    assert_healthy(ctx)
  end

  # Every ping used to queue a pong on the connection's write buffer with
  # no bound, so a server that pinged and never read grew the port program
  # without limit (1,000,000 pings -> VmRSS +134 MiB; found by this test).
  # Since a124d32 the port stops answering while 256 KiB wait unwritten
  # (RFC 6455 5.5.3 lets a client answer only the latest ping).
  test "a ping flood from a server that never reads keeps RSS bounded", ctx do
    n = 1_000_000
    path = tagged("/ping_flood?n=#{n}&read=0&hold_s=2")
    before = status_kib(ctx.os_pid, "VmRSS")
    conn = connect!(ctx.evil_base <> path)
    assert_receive {:ws_port, ^conn, {:text, "flood done"}}, 60_000
    grown = status_kib(ctx.os_pid, "VmRSS") - before
    # the stalled connection holds up no other one
    assert_echo(ctx.other)
    :ok = :ws_port.close(conn)
    # 127 MB of pongs were due; a bounded queue keeps far less than that
    assert grown < 48 * 1024, "VmRSS grew by #{div(grown, 1024)} MiB"
    assert_healthy(ctx)
  end

  test "a close frame with a 1-byte payload fails with 1002", ctx do
    path = tagged("/bad_close_1byte")
    conn = connect!(ctx.evil_base <> path)
    assert {:protocol_error, 1002, _} = await_closed(conn)
    assert server_close_code(ctx, path) == "1002"
    assert_healthy(ctx)
  end

  test "a close frame with code 1005 fails with 1002", ctx do
    path = tagged("/bad_close_code")
    conn = connect!(ctx.evil_base <> path)
    assert {:protocol_error, 1002, _} = await_closed(conn)
    assert server_close_code(ctx, path) == "1002"
    assert_healthy(ctx)
  end

  test "a wrong Sec-WebSocket-Accept is a bad handshake", ctx do
    path = tagged("/bad_accept")
    assert {:error, {:bad_handshake, detail}} = connect(ctx.evil_base <> path)
    assert detail =~ "Accept"
    # no close frame: the TCP connection is just dropped
    assert server_close_code(ctx, path) == "1006"
    assert_healthy(ctx)
  end

  test "a header block that never ends (fast) is refused at the size limit", ctx do
    path = tagged("/endless_headers")

    assert {:error, {:bad_handshake, detail}} =
             connect(ctx.evil_base <> path, %{connect_timeout: 15_000})

    assert detail =~ "too"
    assert server_close_code(ctx, path) == "1006"
    assert_healthy(ctx)
  end

  test "a header block that never ends (slow) hits connect_timeout", ctx do
    path = tagged("/endless_headers?interval_ms=100")
    assert {:error, :timeout} = connect(ctx.evil_base <> path, %{connect_timeout: 1_500})
    assert server_close_code(ctx, path) == "1006"
    assert_healthy(ctx)
  end

  test "one 100 KiB header line is refused", ctx do
    path = tagged("/huge_headers")
    assert {:error, {:bad_handshake, detail}} = connect(ctx.evil_base <> path)
    assert detail =~ "too"
    assert server_close_code(ctx, path) == "1006"
    assert_healthy(ctx)
  end

  test "a server trickling one byte per second does not stall other connections", ctx do
    path = tagged("/trickle")
    conn = connect!(ctx.evil_base <> path)

    for _ <- 1..3 do
      Process.sleep(700)
      assert_echo(ctx.other)
    end

    refute_received {:ws_port, ^conn, _}
    :ok = :ws_port.close(conn)
    assert server_close_code(ctx, path) == "1000"
    assert_healthy(ctx)
  end

  # Each byte of the head in its own TLS record: the port program reads one
  # byte per SSL_read however many records wait in its socket. A program that
  # reads on while bytes are there (and re-parses the head at each byte, its
  # cost growing with the head) falls behind the server for good and serves
  # nothing else until the attempt ends; ordering shows it: the driver gets
  # the port program's events in order, so an echo answered only after the
  # trickled connection failed arrives after its ws_port_closed.
  test "a server trickling its head one byte per TLS record does not hold the loop", ctx do
    path = tagged("/trickle_headers")

    {:ok, conn} =
      connect(ctx.evil_tls_base <> path, %{
        await: false,
        connect_timeout: 60_000,
        tls: %{cacertfile: ctx.ca}
      })

    # well into the head: a program that reparses it would be behind by now
    Peer.await_line(ctx.evil_tls, "TRICKLED #{path} 24576", @wait)

    for i <- 1..3 do
      assert_echo(ctx.other)

      refute_received {:ws_port_closed, ^conn, _},
                      "echo #{i} of the other connection came only after the trickled " <>
                        "connection had failed: the port program served nothing else meanwhile"
    end

    assert {:bad_handshake, detail} = await_closed(conn)
    assert detail =~ "response headers too large"
    Peer.await_line(ctx.evil_tls, "CLOSE #{path} ", @wait)
    assert_healthy(ctx)
  end

  test "120 small headers are refused as too many headers, not as too large", ctx do
    path = tagged("/too_many_headers?n=120")
    assert {:error, {:bad_handshake, detail}} = connect(ctx.evil_base <> path)
    assert detail == "too many headers (more than 100)"
    assert server_close_code(ctx, path) == "1006"
    assert_healthy(ctx)
  end

  # the response is read in 8 KiB pieces into a buffer that grows: a 60 KiB
  # head (under the 64 KiB limit) is accepted whole, and the frame the server
  # wrote right after it, in the same write, is the first message
  test "a 60 KiB 101 head followed at once by a frame is accepted", ctx do
    path = tagged("/big_head?kb=60")
    conn = connect!(ctx.evil_base <> path)
    assert_receive {:ws_port, ^conn, {:text, "first"}}, @wait
    assert_echo(conn)
    :ok = :ws_port.close(conn)
    assert server_close_code(ctx, path) == "1000"
    assert_healthy(ctx)
  end

  test "an HTTP/1.0 101 is a bad handshake naming the version", ctx do
    path = tagged("/http10_101")
    assert {:error, {:bad_handshake, detail}} = connect(ctx.evil_base <> path)
    assert detail =~ "HTTP/1.0"
    assert detail =~ "HTTP/1.1"
    assert server_close_code(ctx, path) == "1006"
    assert_healthy(ctx)
  end

  test "interim 1xx responses before the 101 are skipped", ctx do
    path = tagged("/interim_101?codes=100,103,102")
    conn = connect!(ctx.evil_base <> path)
    assert_echo(conn)
    :ok = :ws_port.close(conn)
    assert server_close_code(ctx, path) == "1000"
    assert_healthy(ctx)
  end

  test "all malicious cases at once, beside the echo connection", ctx do
    cases = [
      {"/len63", %{}, {:closed, 1009}},
      {"/over_max?size=5000", %{max_message_size: 4999}, {:closed, 1009}},
      {"/endless_fragments", %{max_message_size: 1 <<< 20}, {:closed, 1009}},
      {"/bad_close_1byte", %{}, {:closed, 1002}},
      {"/bad_close_code", %{}, {:closed, 1002}},
      {"/bad_accept", %{}, :bad_handshake},
      {"/endless_headers", %{}, :bad_handshake},
      {"/huge_headers", %{}, :bad_handshake}
    ]

    conns =
      for {p, opts, want} <- cases do
        path = tagged(p)
        {:ok, conn} = connect(ctx.evil_base <> path, Map.put(opts, :await, false))
        {conn, path, want}
      end

    assert_echo(ctx.other)

    for {conn, path, want} <- conns do
      reason = await_closed(conn)

      case want do
        {:closed, code} ->
          assert {:protocol_error, ^code, _} = reason, "#{path}: #{inspect(reason)}"
          assert server_close_code(ctx, path) == Integer.to_string(code)

        :bad_handshake ->
          assert {:bad_handshake, _} = reason, "#{path}: #{inspect(reason)}"
      end
    end

    assert_healthy(ctx)
  end

  ## garbage from the BEAM side

  # {packet,4} payloads no correct driver sends; each must be answered with
  # {error, 0, {badarg, _}} (the driver logs it) and nothing else.
  defp garbage_without_id do
    connect = :erlang.term_to_binary({:connect, 77, "ws://127.0.0.1:1/x", []})

    [
      "",
      <<0>>,
      <<7, "not a packet type">>,
      <<131>>,
      <<131, 200>>,
      :erlang.term_to_binary(:connect),
      :erlang.term_to_binary([:send, 1]),
      :erlang.term_to_binary({:frobnicate, 1}),
      :erlang.term_to_binary({}),
      :erlang.term_to_binary({:stats, 0, :extra}),
      :erlang.term_to_binary({:stats, 1 <<< 40}),
      :erlang.term_to_binary({:stats, -1}),
      :erlang.term_to_binary({:stats, self()}),
      :erlang.term_to_binary({:stats, make_ref()}),
      :erlang.term_to_binary({:send, 1.5, :text, "x"}),
      # truncated terms
      binary_part(connect, 0, 10),
      binary_part(connect, 0, byte_size(connect) - 1),
      # trailing garbage
      connect <> <<0>>,
      # huge claimed lengths: binary of 4 GiB - 16, list of 2^31 elements,
      # atom longer than allowed, tuple of 2^32-1 elements
      <<131, 104, 2, 100, 0, 5, "stats", 109, 0xFFFFFFF0::32, "abc">>,
      <<131, 104, 2, 100, 0, 5, "stats", 108, 0x7FFFFFFF::32, 106>>,
      <<131, 104, 2, 100, 0xFFFF::16, "stats">>,
      <<131, 105, 0xFFFFFFFF::32, 100, 0, 5, "stats">>,
      # deep nesting
      :erlang.term_to_binary(Enum.reduce(1..40, :stats, fn _, acc -> {acc} end)),
      # compressed term
      :erlang.term_to_binary({:stats, 1, :binary.copy("x", 1000)}, compressed: 9),
      # raw sends: too short, id 0, bad opcode
      <<1, 0, 0>>,
      <<1, 0::32, 1, "x">>,
      <<1, 1::32, 8, "x">>,
      # a big packet of noise
      :crypto.strong_rand_bytes(1 <<< 20) |> then(&(<<7>> <> &1))
    ]
  end

  test "garbage packets from the BEAM are refused and logged; the port keeps working", ctx do
    port = port_of(ctx.driver)
    packets = garbage_without_id()

    log =
      capture_log(fn ->
        for p <- packets, do: true = Port.command(port, p)
        # commands are handled in order: once this echo is back, every
        # garbage packet before it has been answered
        assert_echo(ctx.other)
        Process.sleep(200)
        Logger.flush()
      end)

    refused = length(Regex.scan(~r/refused a command/, log))

    assert refused == length(packets),
           "#{refused} refusals logged for #{length(packets)} packets:\n#{log}"

    assert log =~ "badarg"
    assert_healthy(ctx)
  end

  test "a {packet,4} length prefix over the limit is refused and the program exits 0", ctx do
    # Only a raw pipe can send a bad length prefix (the BEAM frames packets
    # itself), so this starts its own copy of the program without {packet, 4}.
    program =
      case System.get_env("WS_PORT_PROGRAM") do
        p when p in [nil, ""] -> Application.app_dir(:ws_port, "priv/ws_port")
        p -> Path.expand(p)
      end

    # with `port`, as the driver starts it (without, the program takes such
    # input for a person's and exits 2 with a usage note: see cli_test.exs)
    port =
      Port.open({:spawn_executable, program}, [
        :binary,
        :exit_status,
        :use_stdio,
        args: ["port"]
      ])

    true = Port.command(port, <<0xFFFFFFF0::32, "never mind the length">>)
    {event, status} = collect_raw(port, <<>>)
    assert status == 0
    assert <<len::32, term::binary-size(len)>> = event
    assert {:error, 0, {:badarg, detail}} = :erlang.binary_to_term(term)
    assert detail =~ "exceeds"
    # the shared program was not involved
    assert_healthy(ctx)
  end

  defp collect_raw(port, acc) do
    receive do
      {^port, {:data, d}} -> collect_raw(port, acc <> d)
      {^port, {:exit_status, s}} -> {acc, s}
    after
      @wait -> flunk("the port program neither answered nor exited; got #{inspect(acc)}")
    end
  end

  test "commands naming unknown ids or misusing a live id are refused for that id", ctx do
    port = port_of(ctx.driver)
    {:ws_port, _, other_id} = ctx.other

    # unknown ids: {error, Id, {unknown_id, _}} (the driver drops those
    # quietly, as a send racing a close); the port must stay up
    for p <- [
          :erlang.term_to_binary({:send, 4_000_000_000, :text, "x"}),
          :erlang.term_to_binary({:close, 4_000_000_001, 1000, ""}),
          :erlang.term_to_binary({:active, 4_000_000_002, 5}),
          :erlang.term_to_binary({:stats, 4_000_000_003}),
          <<1, 4_000_000_004::32, 2, "raw to nobody">>
        ],
        do: true = Port.command(port, p)

    # the live id of the other connection: a second connect with it, and
    # malformed commands naming it, go back to its owner as ws_port_error
    misuse = [
      :erlang.term_to_binary({:connect, other_id, "ws://127.0.0.1:1/", []}),
      :erlang.term_to_binary({:close, other_id, 1005, ""}),
      :erlang.term_to_binary({:close, other_id, 1000, <<255>>}),
      :erlang.term_to_binary({:active, other_id, :sometimes}),
      :erlang.term_to_binary({:send, other_id, :ping, :binary.copy("p", 126)}),
      :erlang.term_to_binary({:send, other_id, :frob, "x"}),
      :erlang.term_to_binary({:connect, other_id + 1_000_000, "ws://127.0.0.1:1/", [{:frob, 1}]})
    ]

    for p <- misuse, do: true = Port.command(port, p)

    errors =
      for _ <- 1..6 do
        assert_receive {:ws_port_error, conn, {what, detail}}, @wait
        assert conn == ctx.other
        assert is_atom(what) and is_binary(detail)
        what
      end

    assert :id_in_use in errors
    assert :badarg in errors
    # still the same open connection
    assert_healthy(ctx)
    assert_echo(ctx.other, "after misuse")
  end
end
