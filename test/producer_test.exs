Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.ProducerTest do
  @moduledoc """
  The logic of the Broadway producer (`WsPort.ProducerCore`,
  `WsPort.ProducerOptions`) without Broadway: the real port program against
  the python3-websockets test server (test/peers/ws_server.py) on 127.0.0.1.

  The test process plays the producer: it owns the connection, feeds the
  owner messages to `ProducerCore.handle_info/2` and gives demand with
  `ProducerCore.handle_demand/2`, as `WsPort.Producer` does from its GenStage
  callbacks. Telemetry events are sent to the test process.
  """
  use ExUnit.Case, async: false

  alias WsPort.{ProducerCore, ProducerOptions}
  alias WsPort.Test.Peer

  @moduletag timeout: 120_000
  @moduletag :capture_log
  # liveness bound: what must happen happens far sooner on a healthy machine
  @wait 20_000
  # how long to watch for something that must NOT happen
  @quiet 400

  # The restart test needs ws_server.py's --port (come back on the same port)
  # and /seq (numbered messages naming the server connection).
  @server_src File.read!(Path.expand("peers/ws_server.py", __DIR__))
  @restartable_server String.contains?(@server_src, "--port") and
                        String.contains?(@server_src, "/seq")
  # ws_retry_fun relies on :ws_port.connect/2's retry_fun option
  @retry_fun_supported Code.ensure_loaded?(:ws_port_retry)

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    peer = Peer.start!(:python)
    on_exit(fn -> Peer.stop(peer) end)
    %{server: peer, base: "ws://127.0.0.1:#{Peer.port(peer)}"}
  end

  ## helpers

  defp tagged(path) do
    sep = if String.contains?(path, "?"), do: "&", else: "?"
    "#{path}#{sep}tag=#{System.unique_integer([:positive])}"
  end

  defp start_core(opts) do
    test = self()

    telemetry = fn event, measurements, meta ->
      send(test, {:telemetry, event, measurements, meta})
    end

    {:ok, core} = ProducerCore.init(opts, telemetry: telemetry)
    core
  end

  # Feeds owner messages to the core until `done?.(core, events)` holds;
  # returns {events, core} (events in emission order).
  defp pump(core, done?, acc \\ [], timeout \\ @wait) do
    if done?.(core, acc) do
      {acc, core}
    else
      conn = ProducerCore.conn(core)

      receive do
        msg
        when elem(msg, 1) == conn and
               elem(msg, 0) in [
                 :ws_port,
                 :ws_port_up,
                 :ws_port_down,
                 :ws_port_closed,
                 :ws_port_passive,
                 :ws_port_error
               ] ->
          case ProducerCore.handle_info(msg, core) do
            {:ok, events, core} -> pump(core, done?, acc ++ events, timeout)
            {:stop, reason, events, core} -> {acc ++ events, Map.put(core, :stopped, reason)}
          end
      after
        timeout ->
          flunk(
            "nothing more within #{timeout} ms; #{length(acc)} events; " <>
              inspect(ProducerCore.counters(core))
          )
      end
    end
  end

  defp pump_until_up(core), do: pump_status(core, :up)

  defp pump_status(core, status) do
    {[], core} = pump(core, fn c, _ -> ProducerCore.counters(c).status == status end)
    core
  end

  defp take(core, n) do
    pump(core, fn _, acc -> length(acc) >= n end)
  end

  defp credit(core) do
    {:ok, info} = :ws_port.info(ProducerCore.conn(core))
    info.credit
  end

  defp assert_quiet(core) do
    conn = ProducerCore.conn(core)
    refute_receive {:ws_port, ^conn, _}, @quiet
  end

  defp letters(events), do: Enum.map(events, fn %{data: <<c, _::binary>>} -> c end)

  defp expected_letters(range), do: Enum.map(range, &(?a + rem(&1, 26)))

  defp flush_telemetry(acc \\ []) do
    receive do
      {:telemetry, event, m, meta} -> flush_telemetry([{List.last(event), m, meta} | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  ## demand and credit

  describe "demand becomes credit" do
    test "demand of 10 delivers exactly 10 and the socket pauses; more demand resumes", ctx do
      # 5000 x 16 KiB = 80 MB: far more than socket buffers hold
      path = tagged("/send?n=5000&size=16384&type=text")
      core = start_core(url: ctx.base, path: path, max_buffer: 0)
      core = pump_until_up(core)
      assert credit(core) == 0

      {[], core} = ProducerCore.handle_demand(10, core)
      {events, core} = take(core, 10)
      assert length(events) == 10
      assert letters(events) == expected_letters(0..9)
      assert Enum.all?(events, &(&1.metadata.opcode == :text and byte_size(&1.data) == 16_384))
      assert %{url: url, connection: 1} = hd(events).metadata
      assert url == ctx.base <> path

      # paused: no credit left, nothing more arrives, the server is stuck
      assert_quiet(core)
      assert credit(core) == 0
      assert %{pending: 0, outstanding: 0, buffered: 0} = ProducerCore.counters(core)
      refute Enum.any?(Peer.lines(ctx.server), &(&1 == "SENT #{path}"))

      # more demand resumes the flow, in order, exactly as much
      {[], core} = ProducerCore.handle_demand(25, core)
      {more, core} = take(core, 25)
      assert letters(more) == expected_letters(10..34)
      assert_quiet(core)
      assert credit(core) == 0
      refute Enum.any?(Peer.lines(ctx.server), &(&1 == "SENT #{path}"))

      ProducerCore.terminate(core)
      assert {1000, _} = Peer.await_closed(ctx.server, path)
    end

    test "max_buffer: the port gets demand + max_buffer, the extra is served from the buffer",
         ctx do
      path = tagged("/send?n=2000&size=8192&type=binary")
      core = start_core(url: ctx.base, path: path, max_buffer: 5)
      core = pump_until_up(core)

      {[], core} = ProducerCore.handle_demand(10, core)
      {events, core} = take(core, 10)
      assert Enum.map(events, &:binary.first(&1.data)) == Enum.to_list(0..9)
      assert Enum.all?(events, &(&1.metadata.opcode == :binary))

      # the 5 extra arrive and wait in the buffer, no more
      {[], core} = pump(core, fn c, _ -> ProducerCore.counters(c).buffered == 5 end)
      assert_quiet(core)
      assert credit(core) == 0
      assert %{buffered: 5, outstanding: 0, pending: 0} = ProducerCore.counters(core)

      # demand within the buffer is met at once, and the buffer refilled
      {now, core} = ProducerCore.handle_demand(3, core)
      assert Enum.map(now, &:binary.first(&1.data)) == [10, 11, 12]
      assert %{buffered: 2, outstanding: 3} = ProducerCore.counters(core)
      {[], core} = pump(core, fn c, _ -> ProducerCore.counters(c).buffered == 5 end)
      assert_quiet(core)

      {now, core} = ProducerCore.handle_demand(7, core)
      assert Enum.map(now, &:binary.first(&1.data)) == [13, 14, 15, 16, 17]
      {later, core} = take(core, 2)
      assert Enum.map(later, &:binary.first(&1.data)) == [18, 19]

      ProducerCore.terminate(core)
    end
  end

  ## reconnection

  describe "reconnection" do
    @tag skip: not @restartable_server
    test "a server restart mid-stream keeps the order; telemetry reports it" do
      first = Peer.start!(:python)
      port = Peer.port(first)
      base = "ws://127.0.0.1:#{port}"

      core =
        start_core(
          url: base,
          path: tagged("/seq?n=1000000&interval_ms=1"),
          max_buffer: 0,
          retry: [delay: 50, max_delay: 200, backoff_factor: 2, jitter_fraction: 0.1]
        )

      core = pump_until_up(core)
      {[], core} = ProducerCore.handle_demand(600, core)
      {before, core} = take(core, 100)

      Peer.stop(first)
      second = Peer.start!(:python, args: ["--port", "#{port}"])
      on_exit(fn -> Peer.stop(second) end)

      {events, core} = pump(core, fn _, acc -> length(acc) >= 600 end, before)
      assert length(events) == 600
      assert_quiet(core)

      parsed =
        Enum.map(events, fn %{data: data, metadata: meta} ->
          [conn_id, seq] = String.split(data, ":")
          {conn_id, String.to_integer(seq), meta.connection}
        end)

      # server connections follow each other (no interleaving) and each one's
      # messages are 0, 1, 2, ... without gap or duplicate
      chunks = Enum.chunk_by(parsed, fn {id, _, _} -> id end)
      assert length(chunks) == 2, "expected 2 server connections, got #{length(chunks)}"

      for {chunk, n} <- Enum.with_index(chunks, 1) do
        assert Enum.map(chunk, &elem(&1, 1)) == Enum.to_list(0..(length(chunk) - 1))
        assert Enum.all?(chunk, fn {_, _, c} -> c == n end)
      end

      telemetry = flush_telemetry()
      names = Enum.map(telemetry, &elem(&1, 0))
      assert [:success, :status | _] = names
      assert :disconnected in names
      assert Enum.count(names, &(&1 == :success)) == 2
      assert [1, 0, 1] == for({:status, %{value: v}, _} <- telemetry, do: v)

      ProducerCore.terminate(core)
    end

    test "a failure that is not retried stops the core: failure, closed telemetry" do
      {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
      {:ok, port} = :inet.port(l)
      :ok = :gen_tcp.close(l)

      core = start_core(url: "ws://127.0.0.1:#{port}/x", retry: false, telemetry_id: :my_feed)
      {[], core} = pump(core, fn c, _ -> Map.has_key?(c, :stopped) end)
      assert {:shutdown, {:ws_port_closed, :econnrefused}} = core.stopped

      assert_received {:telemetry, [:my_feed, :connection, :failure], %{count: 1},
                       %{reason: :econnrefused, url: "ws://127.0.0.1:" <> _}}

      assert_received {:telemetry, [:my_feed, :connection, :closed], %{count: 1},
                       %{reason: :econnrefused}}

      refute_received {:telemetry, [:my_feed, :connection, :success], _, _}
    end

    test "retries with the port's backoff report each failed attempt" do
      {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
      {:ok, port} = :inet.port(l)
      :ok = :gen_tcp.close(l)

      core =
        start_core(
          url: "ws://127.0.0.1:#{port}",
          ws_retry_opts: %{max_retries: 2, retries_left: 2, delay: 10, backoff_factor: 1}
        )

      {[], core} = pump(core, fn c, _ -> Map.has_key?(c, :stopped) end)
      assert {:shutdown, {:ws_port_closed, :econnrefused}} = core.stopped
      failures = for {:failure, _, meta} <- flush_telemetry(), do: meta
      # the first attempt and two retries
      assert length(failures) == 3
    end

    @tag skip: not @retry_fun_supported
    test "ws_retry_fun decides the delay and when to stop" do
      {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
      {:ok, port} = :inet.port(l)
      :ok = :gen_tcp.close(l)
      test = self()

      fun = fn
        %{retries_left: 0} ->
          :stop

        %{retries_left: n} = state ->
          send(test, {:retry_fun, state})
          %{state | retries_left: n - 1, delay: state.delay * 2}
      end

      core =
        start_core(
          url: "ws://127.0.0.1:#{port}",
          ws_retry_opts: %{retries_left: 2, delay: 5, tag: :mine},
          ws_retry_fun: fun
        )

      {[], core} = pump(core, fn c, _ -> Map.has_key?(c, :stopped) end)
      assert {:shutdown, {:ws_port_closed, _}} = core.stopped
      assert_received {:retry_fun, %{retries_left: 2, delay: 5, tag: :mine}}
      assert_received {:retry_fun, %{retries_left: 1, delay: 10, tag: :mine}}
      refute_received {:retry_fun, _}
    end
  end

  ## frames after connect, draining

  test "on_connect frames are sent after the handshake", ctx do
    core =
      start_core(
        url: ctx.base <> tagged("/echo"),
        on_connect: [{:text, "subscribe"}, {:binary, <<1, 2, 3>>}, "plain"]
      )

    {[], core} = ProducerCore.handle_demand(3, core)
    {events, core} = take(core, 3)

    assert Enum.map(events, &{&1.metadata.opcode, &1.data}) == [
             {:text, "subscribe"},
             {:binary, <<1, 2, 3>>},
             {:text, "plain"}
           ]

    ProducerCore.terminate(core)
  end

  test "prepare_for_draining closes with 1000 and gives no more credit", ctx do
    path = tagged("/send?n=100&size=10&type=text")
    core = start_core(url: ctx.base, path: path, max_buffer: 4)
    core = pump_until_up(core)
    {[], core} = ProducerCore.handle_demand(2, core)
    {[_, _], core} = take(core, 2)
    {[], core} = pump(core, fn c, _ -> ProducerCore.counters(c).buffered == 4 end)

    {[], core} = ProducerCore.handle_demand(0, core)
    {events, core} = ProducerCore.prepare_for_draining(core)
    assert events == []
    assert %{draining: true, status: :closed, buffered: 0} = ProducerCore.counters(core)
    assert {1000, _} = Peer.await_closed(ctx.server, path)

    # demand after draining gives no credit (the connection is closed)
    {[], core} = ProducerCore.handle_demand(5, core)
    assert %{outstanding: 0} = ProducerCore.counters(core)
    assert {:error, :closed} = :ws_port.info(ProducerCore.conn(core))
    assert_received {:telemetry, [:websocket_producer, :connection, :status], %{value: 0}, _}
  end

  test "init fails with the option's name for bad options" do
    assert {:error, message} = ProducerCore.init(url: "http://x")
    assert message =~ ":url"
  end

  ## options

  describe "option validation" do
    defp error(opts) do
      assert {:error, message} = ProducerOptions.validate(opts)
      message
    end

    test "url is required and must be ws:// or wss://" do
      assert error([]) =~ "required option :url"

      assert error(url: "http://example.com") =~
               "invalid value for option :url: \"http://example.com\""

      assert error(url: "ws://") =~ "ws:// or wss://"
      assert error(url: 42) =~ ":url"
    end

    test "path is appended to url" do
      join = fn url, path ->
        {:ok, c} = ProducerOptions.validate(url: url, path: path)
        c.url
      end

      assert join.("wss://example.com:443", "/stream/updates") ==
               "wss://example.com:443/stream/updates"

      assert join.("wss://example.com/", "/a") == "wss://example.com/a"
      assert join.("wss://example.com/api", "v1?x=1") == "wss://example.com/api/v1?x=1"
      assert join.("ws://h/x", "?token=1") == "ws://h/x?token=1"
      assert error(url: "ws://h", path: 1) =~ "invalid value for option :path: 1"
    end

    test "unknown options are named, with accepted ones and hints" do
      msg = error(url: "ws://h", foo: 1)
      assert msg =~ "unknown option :foo"
      assert msg =~ ":max_buffer"
      assert error(url: "ws://h", gun_opts: %{}) =~ "ws_port does not use gun"
      assert error(url: "ws://h", max_demand: 10) =~ "processors"
      assert error([{"url", "ws://h"}]) =~ "keyword list"
      assert error(:nope) =~ "keyword list or a map"
    end

    test "defaults, aliases and conflicts" do
      {:ok, c} = ProducerOptions.validate(url: "ws://h")
      assert c.connect_timeout == 15_000
      assert c.idle_timeout == 0
      assert c.max_buffer == 10
      assert c.telemetry_id == :websocket_producer
      assert c.retry == %{}
      assert c.on_connect == []

      {:ok, c} =
        ProducerOptions.validate(%{
          url: "ws://h",
          await_timeout: 8_000,
          ws_timeout: 15_000,
          broadway: [name: X]
        })

      assert {c.connect_timeout, c.idle_timeout} == {8_000, 15_000}
      {:ok, c} = ProducerOptions.validate(url: "ws://h", ws_timeout: nil)
      assert c.idle_timeout == 0

      assert error(url: "ws://h", await_timeout: 1, connect_timeout: 2) =~
               ":await_timeout is an alias of :connect_timeout"

      assert error(url: "ws://h", connect_timeout: 0) =~
               "invalid value for option :connect_timeout: 0; expected a positive integer"

      assert error(url: "ws://h", ws_timeout: -1) =~ "option :idle_timeout: -1"
      assert error(url: "ws://h", ping_interval: :x) =~ "option :ping_interval"

      assert error(url: "ws://h", max_buffer: -1) =~
               "option :max_buffer: -1; expected a non-negative integer"

      assert error(url: "ws://h", telemetry_id: "x") =~ "option :telemetry_id"
      assert error(url: "ws://h", max_message_size: 0) =~ "option :max_message_size"

      assert {:ok, %{compress: false}} = ProducerOptions.validate(url: "ws://h")
      assert {:ok, %{compress: %{}}} = ProducerOptions.validate(url: "ws://h", compress: true)

      assert error(url: "ws://h", compress: [level: 10]) =~
               "invalid value for option :compress: [level: 10]; expected valid :level (got 10)"

      assert error(url: "ws://h", compress: :maybe) =~ "option :compress"
    end

    test "headers, protocols, tls" do
      {:ok, c} =
        ProducerOptions.validate(url: "ws://h", headers: [{"x-a", "1"}, {:x_b, 2}, {'x-c', 'v'}])

      # the values kept as funs (the state shows no Authorization in clear)
      assert [{"x-a", a}, {"x_b", b}, {"x-c", c3}] = c.headers
      assert {a.(), b.(), c3.()} == {"1", "2", "v"}
      # off_broadway_websocket's example has a map as a header value
      assert error(url: "ws://h", headers: [{"X-ABC-PAYLOAD", %{}}]) =~
               "invalid value in option :headers"

      assert error(url: "ws://h", headers: :x) =~ "option :headers"
      assert error(url: "ws://h", protocols: ["a", ""]) =~ "option :protocols"

      {:ok, c} =
        ProducerOptions.validate(url: "wss://h", tls: [verify: :verify_none, cacertfile: "/x"])

      assert c.tls == %{verify: :verify_none, cacertfile: "/x"}
      assert error(url: "wss://h", tls: [verify: :yes]) =~ ":verify_peer or :verify_none"
      # every key of :ws_port.connect/2's :tls (one list: ws_port_proto:tls_keys/0)
      assert error(url: "wss://h", tls: [cacerts: []]) =~
               "invalid value for :cacerts in option :tls: []"

      msg = error(url: "wss://h", tls: [bogus: 1])
      assert msg =~ "unknown key :bogus in option :tls"

      for k <-
            [:server_name, :cacerts, :versions, :ciphers, :ciphersuites, :pins] ++
              [:server_name_indication, :cert, :key, :password] do
        assert msg =~ inspect(k)
      end

      {:ok, c} =
        ProducerOptions.validate(
          url: "wss://h",
          tls: [
            versions: [:"tlsv1.3"],
            ciphersuites: "TLS_AES_128_GCM_SHA256",
            ciphers: ["ECDHE-ECDSA-AES128-GCM-SHA256"],
            server_name_indication: :disable,
            pins: ["sha256/" <> Base.encode64(:binary.copy(<<1>>, 32))],
            cacerts: [<<48, 0>>]
          ]
        )

      assert c.tls.versions == [:"tlsv1.3"]
      # the key and password are never shown in an error
      msg = error(url: "wss://h", tls: [cert: <<48, 0>>, key: "secret-key"])
      assert msg =~ "invalid value for :key in option :tls: :redacted"
      refute msg =~ "secret-key"
      msg = error(url: "wss://h", tls: [certfile: "/c", keyfile: "/k", password: ""])
      assert msg =~ ":password" and msg =~ ":redacted"
    end

    test "retry accepts off_broadway_websocket's ws_retry_opts keys" do
      opts = %{
        max_retries: 5,
        retries_left: 5,
        delay: 1_000,
        max_delay: 30_000,
        backoff_factor: 2,
        jitter_fraction: 0.1
      }

      {:ok, c} = ProducerOptions.validate(url: "ws://h", ws_retry_opts: opts)

      assert c.retry == %{
               max_retries: 5,
               delay: 1_000,
               max_delay: 30_000,
               backoff_factor: 2,
               jitter: 0.1
             }

      assert %{retry: %{max_retries: 5}} = ProducerOptions.connect_opts(c)

      {:ok, c} = ProducerOptions.validate(url: "ws://h", retry: [retries_left: 3])
      assert c.retry == %{max_retries: 3}
      {:ok, c} = ProducerOptions.validate(url: "ws://h", retry: false)
      assert ProducerOptions.connect_opts(c).retry == false

      assert error(url: "ws://h", retry: [delay: -1]) =~
               "invalid value for :delay in option :retry (alias :ws_retry_opts): -1"

      assert error(url: "ws://h", retry: [backoff_factor: 0.5]) =~ "a number >= 1"

      assert error(url: "ws://h", retry: [jitter_fraction: 2]) =~
               ":full, :equal or a number between 0 and 1"

      assert error(url: "ws://h", retry: [jitter: :half]) =~ ":full, :equal or a number"
      {:ok, c} = ProducerOptions.validate(url: "ws://h", retry: [jitter_fraction: :equal])
      assert c.retry == %{max_retries: :infinity, jitter: :equal}
      {:ok, c} = ProducerOptions.validate(url: "ws://h", retry: [jitter: :full])
      assert c.retry == %{max_retries: :infinity, jitter: :full}
      assert error(url: "ws://h", retry: [tag: 1]) =~ "unknown key :tag in option :retry"
      assert error(url: "ws://h", retry: "x") =~ "option :retry"
    end

    test "ws_retry_fun: the retry map is its state, extra keys carried" do
      fun = fn s -> s end

      {:ok, c} =
        ProducerOptions.validate(
          url: "ws://h",
          ws_retry_fun: fun,
          ws_retry_opts: %{delay: 5, tag: 1}
        )

      opts = ProducerOptions.connect_opts(c)
      assert opts.retry_fun == fun
      assert opts.retry_state == %{delay: 5, tag: 1}
      refute Map.has_key?(opts, :retry)

      {:ok, c} = ProducerOptions.validate(url: "ws://h", ws_retry_fun: fun)
      assert c.retry == %{max_retries: 5, retries_left: 5, delay: 10_000}

      assert error(url: "ws://h", ws_retry_fun: fn -> 1 end) =~ "option :ws_retry_fun"
      assert error(url: "ws://h", ws_retry_fun: fun, retry: false) =~ ":ws_retry_fun is given"

      assert error(url: "ws://h", ws_retry_fun: fun, retry: %{retries_left: 1}) =~
               "must include :delay"
    end

    test "on_connect and retry_on" do
      {:ok, _} = ProducerOptions.validate(url: "ws://h", on_connect: fn -> ["x"] end)
      assert error(url: "ws://h", on_connect: [{:ping, "x"}]) =~ "option :on_connect"
      assert error(url: "ws://h", on_connect: "x") =~ "option :on_connect"
      {:ok, c} = ProducerOptions.validate(url: "ws://h", retry_on: [:network, :http_4xx])
      assert ProducerOptions.connect_opts(c).retry_on == [:network, :http_4xx]
      assert error(url: "ws://h", retry_on: [:nope]) =~ ":remote_close"

      assert error(url: "ws://h", retry_on: [:nope]) =~
               "invalid element of option :retry_on: :nope"

      assert error(url: "ws://h", retry_on: [{:remote_close, [1000, 99]}]) =~
               "invalid remote_close code in option :retry_on: 99"

      assert error(url: "ws://h", retry_on: :sometimes) =~
               "invalid value for option :retry_on: :sometimes"

      # a pipeline stays connected: any server close but ours is retried
      {:ok, c} = ProducerOptions.validate(url: "ws://h")
      assert ProducerOptions.connect_opts(c).retry_on == :stay_connected
      opts = [url: "ws://h", retry_on: [{:remote_close, {:except, [1000]}}]]
      {:ok, c} = ProducerOptions.validate(opts)
      assert ProducerOptions.connect_opts(c).retry_on == [{:remote_close, {:except, [1000]}}]
    end

    test "tls key and password and proxy credentials are kept as funs, not in clear" do
      secret = "pr0xy-s3cret"

      {:ok, c} =
        ProducerOptions.validate(url: "ws://h", proxy: "http://u:#{secret}@127.0.0.1:3128")

      assert is_function(c.proxy, 0)
      refute inspect(c, limit: :infinity) =~ secret
      # :ws_port.connect/2 gets them all the same
      {:ok, %{proxy: proxy}} =
        :ws_port_proto.normalize_connect_opts(ProducerOptions.connect_opts(c))

      assert proxy.password == secret and proxy.username == "u"

      {:ok, c} =
        ProducerOptions.validate(
          url: "wss://h",
          tls: [certfile: "/c", keyfile: "/k", password: secret, verify: :verify_none]
        )

      assert %{password: pw, keyfile: "/k", verify: :verify_none} = c.tls
      assert is_function(pw, 0)
      refute inspect(c, limit: :infinity) =~ secret
      {:ok, %{tls: tls}} = :ws_port_proto.normalize_connect_opts(ProducerOptions.connect_opts(c))
      assert tls.password.() == secret
      # an error about a malformed :tls never quotes it
      msg = error(url: "wss://h", tls: [{:password, secret}, :oops])
      refute msg =~ secret
    end

    test "connect_opts: never blocks, nothing read before demand" do
      {:ok, c} = ProducerOptions.validate(url: "ws://h", ping_interval: 5_000)

      assert %{await: false, active: false, ping_interval: 5_000} =
               ProducerOptions.connect_opts(c)

      # every map :ws_port accepts
      assert {:ok, _} = :ws_port_proto.normalize_connect_opts(ProducerOptions.connect_opts(c))
    end
  end
end
