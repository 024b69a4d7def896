Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.ResilienceTest do
  @moduledoc """
  Resilience (issue 3): reconnection with backoff, idle detection, and
  surviving faults, with the real port program against a real
  python3-websockets server (test/peers/ws_server.py), often behind
  test/peers/fault_proxy.py, a userspace TCP fault proxy of our own that the
  tests drive through its stdin (`mode pass | delay MS | blackhole | chop`,
  `reset`, `fin`, `refuse on|off`, `listen on|off`).

  Timing: upper bounds are liveness bounds (generous, never performance
  thresholds). Where the policy says "wait at least D ms", the gap is
  measured in the fault proxy's own clock between the failure it caused and
  the next connection attempt it saw, so the check is a pure lower bound,
  not a race. Reported `delay_ms` values are checked with exact arithmetic
  against the policy and its jitter.

  Everything runs on 127.0.0.1; the tests end only the OS processes they
  started, by pid.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.{Certs, Peer}

  @moduletag timeout: 300_000
  # liveness bound for something that must happen
  @wait 20_000

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    :ok
  end

  ## helpers

  defp start_server(args \\ []) do
    pid = Peer.start!(:python, args: args)
    on_exit(fn -> Peer.stop(pid) end)
    pid
  end

  defp start_proxy(server) do
    proxy = Peer.start_proxy!(Peer.port(server))
    on_exit(fn -> Peer.stop(proxy) end)
    proxy
  end

  defp url(peer, path), do: "ws://127.0.0.1:#{Peer.port(peer)}#{path}"

  defp tagged(path) do
    sep = if String.contains?(path, "?"), do: "&", else: "?"
    "#{path}#{sep}tag=#{System.unique_integer([:positive])}"
  end

  defp connect!(url, opts) do
    case :ws_port.connect(url, opts) do
      {:ok, conn} -> conn
      other -> flunk("connect #{url} failed: #{inspect(other)}")
    end
  end

  defp free_port do
    {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(l)
    :ok = :gen_tcp.close(l)
    port
  end

  defp now_ms, do: System.monotonic_time(:millisecond)

  # The next message about `conn`, as a tagged tuple, or :timeout.
  defp next_event(conn, timeout \\ @wait) do
    receive do
      {:ws_port, ^conn, data} -> {:data, data}
      {:ws_port_down, ^conn, reason, info} -> {:down, reason, info}
      {:ws_port_down, ^conn, reason} -> {:down_without_info, reason}
      {:ws_port_up, ^conn, info} -> {:up, info}
      {:ws_port_closed, ^conn, reason} -> {:closed, reason}
      {:ws_port_error, ^conn, err} -> {:error, err}
      {:ws_port_pong, ^conn, _} -> next_event(conn, timeout)
      {:ws_port_passive, ^conn} -> next_event(conn, timeout)
    after
      timeout -> :timeout
    end
  end

  # Events until (and including) the first one for which `stop?` is true;
  # fails on a timeout. Returns them in order.
  defp events_until(conn, stop?, timeout \\ @wait) do
    deadline = now_ms() + timeout
    do_events_until(conn, stop?, deadline, [])
  end

  defp do_events_until(conn, stop?, deadline, acc) do
    case next_event(conn, max(deadline - now_ms(), 0)) do
      :timeout ->
        flunk(
          "no matching event in time; events so far: #{inspect(Enum.reverse(acc), limit: 50)}"
        )

      ev ->
        acc = [ev | acc]
        if stop?.(ev), do: Enum.reverse(acc), else: do_events_until(conn, stop?, deadline, acc)
    end
  end

  defp echo!(conn, {type, payload} = msg) do
    :ok = :ws_port.send(conn, msg)

    case next_event(conn) do
      {:data, {^type, got}} ->
        assert byte_size(got) == byte_size(payload)
        assert got == payload, "echo differs"
        got

      other ->
        flunk("expected the echo of #{inspect(msg, limit: 5)}, got #{inspect(other, limit: 20)}")
    end
  end

  # The policy's delay for retry number `attempt` (before jitter).
  defp base_delay(%{delay: d, backoff_factor: f, max_delay: cap}, attempt),
    do: min(d * :math.pow(f, attempt - 1), cap)

  # The reported delay_ms of retry `attempt` is the base delay within +-jitter
  # (a fraction), or within [0, base] (:full) or [base / 2, base] (:equal),
  # and 1 ms for rounding.
  defp assert_delay_in_policy(policy, attempt, delay_ms) do
    base = base_delay(policy, attempt)

    {lo, hi} =
      case policy.jitter do
        :full -> {0, base}
        :equal -> {base / 2, base}
        j -> {base * (1 - j), base * (1 + j)}
      end

    lo = floor(lo) - 1
    hi = ceil(hi) + 1

    assert is_integer(delay_ms) and delay_ms >= lo and delay_ms <= hi,
           "retry #{attempt}: delay_ms #{inspect(delay_ms)} not in #{lo}..#{hi} (policy #{inspect(policy)})"
  end

  # proxy lines "ACCEPT n t" / "REFUSED n t" as {kind, n, t_ms}, in order
  defp proxy_attempts(proxy) do
    for line <- Peer.lines(proxy),
        [kind, n, t] <- [String.split(line)],
        kind in ["ACCEPT", "REFUSED"] do
      {kind, String.to_integer(n), String.to_float(t)}
    end
  end

  # How many stdout lines of `peer` start with `prefix`, once there are at
  # least `n` of them (or `timeout` ms have passed): lines travel through
  # another pipe than the owner's messages, so they can come a little later.
  defp await_count(peer, prefix, n, timeout \\ 5_000) do
    deadline = now_ms() + timeout
    do_await_count(peer, prefix, n, deadline)
  end

  defp do_await_count(peer, prefix, n, deadline) do
    count = Enum.count(Peer.lines(peer), &String.starts_with?(&1, prefix))

    if count >= n or now_ms() > deadline do
      count
    else
      Process.sleep(20)
      do_await_count(peer, prefix, n, deadline)
    end
  end

  defp proxy_time(reply) do
    ["OK", t | _] = String.split(reply)
    String.to_float(t)
  end

  defp close_quietly(conn) do
    _ = :ws_port.close(conn)
    :ok
  end

  ## idle detection

  describe "blackhole" do
    test "a silent path is declared dead by idle_timeout, and the connection comes back when it heals" do
      server = start_server()
      proxy = start_proxy(server)
      ping_interval = 200
      idle_timeout = 600

      conn =
        connect!(url(proxy, tagged("/echo")), %{
          ping_interval: ping_interval,
          idle_timeout: idle_timeout,
          connect_timeout: 1_000,
          retry: %{delay: 100, max_delay: 400, backoff_factor: 2, jitter: 0.1}
        })

      echo!(conn, {:text, "before"})

      # the port's pings are answered: their RTT is measured
      info = await_rtt(conn, 5_000)
      assert info.reconnects == 0
      assert next_event(conn, 0) == :timeout

      t0 = now_ms()
      Peer.control(proxy, "mode blackhole")

      # The first event is the idle timeout, not before idle_timeout minus one
      # ping interval (a pong can have arrived at most that long before the
      # blackhole began) and well within a loose liveness bound.
      assert {:down, :idle_timeout, %{attempt: 1} = down} = next_event(conn, 5_000)
      elapsed = now_ms() - t0

      assert elapsed >= idle_timeout - ping_interval - 100,
             "declared dead after only #{elapsed} ms"

      assert elapsed <= 5_000
      assert is_integer(down.delay_ms)

      # While the path stays blackholed, reconnection attempts reach the
      # proxy but their handshake never completes: connect_timeout ends each.
      events = events_until(conn, &match?({:down, _, %{attempt: 2}}, &1), 10_000)
      assert [{:down, :timeout, %{attempt: 2}}] = events

      Peer.control(proxy, "mode pass")
      events = events_until(conn, &match?({:up, _}, &1))

      for ev <- events do
        assert match?({:down, :timeout, _}, ev) or match?({:up, _}, ev),
               "unexpected #{inspect(ev)}"
      end

      attempts = for {:down, _, %{attempt: a}} <- events, do: a
      assert attempts == Enum.to_list(3..(2 + length(attempts))//1)

      echo!(conn, {:text, "after"})
      {:ok, info} = :ws_port.info(conn)
      assert info.reconnects == 1
      assert info.attempt == 0
      close_quietly(conn)
    end
  end

  describe "keepalive" do
    test "pings keep a quiet but slow link alive past idle_timeout" do
      server = start_server()
      proxy = start_proxy(server)
      # 150 ms each way: every pong comes 300+ ms after its ping, later than
      # the next ping (ping_interval 200)
      Peer.control(proxy, "mode delay 150")

      conn =
        connect!(url(proxy, tagged("/echo")), %{
          ping_interval: 200,
          idle_timeout: 1_500,
          retry: %{delay: 100, max_delay: 400, backoff_factor: 2, jitter: 0.1}
        })

      echo!(conn, {:text, "slow"})
      # quiet (no data either way) for more than twice idle_timeout: only
      # the pongs keep it alive
      assert next_event(conn, 4_000) == :timeout
      info = await_rtt(conn, 5_000)
      assert info.reconnects == 0

      # Every pong's RTT includes the proxy's 2 x 150 ms (a lower bound),
      # whichever ping it answers: sampled for 2 s (about 7 pongs).
      samples =
        for _ <- 1..20 do
          Process.sleep(100)
          {:ok, %{rtt_us: rtt}} = :ws_port.info(conn)
          rtt
        end

      assert Enum.all?(samples, &(&1 >= 290_000)),
             "rtt_us below the path's 300 ms round trip: #{inspect(Enum.uniq(samples))}"

      echo!(conn, {:text, "still there"})
      close_quietly(conn)
    end
  end

  describe "stall" do
    test "frames stuck behind a dead socket are counted in unsent_bytes, and the next connection is clean" do
      server = start_server()
      proxy = start_proxy(server)

      conn =
        connect!(url(proxy, tagged("/echo")), %{
          ping_interval: 200,
          idle_timeout: 1_500,
          retry: %{delay: 100, max_delay: 400, backoff_factor: 2, jitter: 0.1}
        })

      echo!(conn, {:text, "before"})
      # nobody reads either end: the socket buffers fill, then the port's queue
      Peer.control(proxy, "mode stall")
      mib = 1_048_576
      payload = :binary.copy(<<7>>, mib)
      # in a task: a busy port may block the sender
      sender = Task.async(fn -> for _ <- 1..48, do: :ws_port.send(conn, {:binary, payload}) end)

      # The port reports the loss before anything else: sends that race it
      # are refused (ws_port_error) only after the down.
      unsent =
        case next_event(conn) do
          {:down, :idle_timeout, %{attempt: 1, unsent_bytes: unsent}} ->
            unsent

          other ->
            flunk(
              "expected {:ws_port_down, conn, :idle_timeout, %{attempt: 1}} first, got " <>
                inspect(other, limit: 8) <>
                "; then: " <> inspect(Enum.take(Enum.dedup(drain_events(conn)), 4))
            )
        end

      results = Task.await(sender, @wait)
      accepted = Enum.count(results, &(&1 == :ok))
      # frames accepted after the down were refused, not queued
      assert Enum.all?(results, &(&1 in [:ok, {:error, :not_connected}])),
             inspect(Enum.uniq(results))

      # Nobody reads: the port's queue filled past its high watermark (senders
      # then wait, see ws_port:send/2) and was still full when the link died.
      assert accepted >= 1
      assert unsent > 0, "unsent_bytes is 0 with #{accepted} MiB accepted into a stalled link"
      assert unsent <= accepted * (mib + 14)

      Peer.control(proxy, "mode pass")
      assert {:up, _} = events_until(conn, &match?({:up, _}, &1)) |> List.last()
      echo!(conn, {:text, "after"})
      echo!(conn, {:binary, :binary.copy(<<8>>, 100_000)})
      close_quietly(conn)
    end
  end

  # The connection's info once it has measured a pong RTT.
  defp await_rtt(conn, timeout) do
    deadline = now_ms() + timeout

    Stream.repeatedly(fn ->
      {:ok, info} = :ws_port.info(conn)
      info
    end)
    |> Enum.find(fn info ->
      cond do
        is_integer(info[:rtt_us]) and info.rtt_us > 0 -> true
        now_ms() > deadline -> flunk("no pong RTT in info within #{timeout} ms: #{inspect(info)}")
        true -> Process.sleep(50) && false
      end
    end)
  end

  ## RST and FIN with backoff

  for fault <- [:reset, :fin] do
    describe "#{fault}" do
      test "reconnects with the configured backoff (delays match the policy within jitter)" do
        fault = unquote(Atom.to_string(fault))
        first_reason = if fault == "reset", do: :econnreset, else: :eof
        server = start_server()
        proxy = start_proxy(server)
        policy = %{delay: 200, backoff_factor: 2, max_delay: 1000, jitter: 0.1}
        conn = connect!(url(proxy, tagged("/echo")), %{retry: policy})
        echo!(conn, {:text, "before"})

        # The server is unreachable for 4 retries (the proxy resets every new
        # connection at once); the 5th retry gets through.
        Peer.control(proxy, "refuse on")
        t_fault = proxy_time(Peer.control(proxy, fault))

        downs =
          for attempt <- 1..5 do
            case next_event(conn) do
              {:down, reason, %{attempt: ^attempt, delay_ms: d} = info} ->
                assert_delay_in_policy(policy, attempt, d)
                assert is_integer(info.unsent_bytes)
                if attempt == 1, do: assert(reason == first_reason)
                {reason, d}

              other ->
                flunk("expected down #{attempt}, got #{inspect(other)}")
            end
          end

        Peer.control(proxy, "refuse off")
        assert {:up, %{status: 101}} = next_event(conn)
        echo!(conn, {:text, "after"})

        # Gaps in the proxy's clock: failure k (the fault, then each refused
        # attempt) to attempt k+1 is at least the reported delay_ms and at
        # least the policy's delay minus its jitter.
        # connection 1, 4 refused, then 6 accepted
        Peer.await_line(proxy, "ACCEPT 6 ")
        attempts = proxy_attempts(proxy)
        [{"ACCEPT", _, _} | retries] = attempts

        assert [
                 {"REFUSED", _, _},
                 {"REFUSED", _, _},
                 {"REFUSED", _, _},
                 {"REFUSED", _, _},
                 {"ACCEPT", _, _}
               ] = retries

        times = [t_fault | Enum.map(retries, fn {_, _, t} -> t end)]
        gaps = times |> Enum.chunk_every(2, 1, :discard) |> Enum.map(fn [a, b] -> b - a end)

        for {{gap, {_reason, d}}, attempt} <- Enum.with_index(Enum.zip(gaps, downs), 1) do
          base = base_delay(policy, attempt)

          assert gap >= d - 2 and gap >= base * (1 - policy.jitter) - 2,
                 "retry #{attempt} came #{gap} ms after the failure (delay_ms #{d}, base #{base})"

          # liveness only
          assert gap <= d + 5_000
        end

        {:ok, info} = :ws_port.info(conn)
        assert info.reconnects == 1
        assert info.attempt == 0

        # The attempt counter starts again after the connection was up.
        Peer.control(proxy, fault)
        assert {:down, ^first_reason, %{attempt: 1, delay_ms: d}} = next_event(conn)
        assert_delay_in_policy(policy, 1, d)
        assert {:up, _} = next_event(conn)
        echo!(conn, {:text, "again"})
        {:ok, info} = :ws_port.info(conn)
        assert info.reconnects == 2
        close_quietly(conn)
      end
    end
  end

  ## chop

  describe "chop" do
    test "messages arrive intact when every write is cut into 1-byte pieces, both ways" do
      server = start_server()
      proxy = start_proxy(server)
      # from the first byte: the upgrade request and response are chopped too
      Peer.control(proxy, "mode chop")
      conn = connect!(url(proxy, tagged("/echo")), %{retry: false})

      echo!(conn, {:text, "hello"})
      echo!(conn, {:text, "héllo wörld ✓ 𝄞"})
      echo!(conn, {:binary, <<0, 1, 2, 255>>})
      echo!(conn, {:text, ""})

      unit = "héllo wörld ✓ 𝄞 — "
      full = :binary.copy(unit, div(65_536, byte_size(unit)))
      big_text = full <> :binary.copy("a", 65_536 - byte_size(full))
      assert byte_size(big_text) == 65_536
      echo!(conn, {:text, big_text})
      echo!(conn, {:binary, :crypto.strong_rand_bytes(65_536)})
      # 126- and 127-byte length boundaries
      echo!(conn, {:binary, :binary.copy(<<7>>, 125)})
      echo!(conn, {:binary, :binary.copy(<<8>>, 126)})
      echo!(conn, {:binary, :binary.copy(<<9>>, 65_535)})
      close_quietly(conn)

      # server-initiated stream and fragmented messages
      conn = connect!(url(proxy, tagged("/send?n=3&size=65536&type=binary")), %{retry: false})

      for i <- 0..2 do
        assert {:data, {:binary, got}} = next_event(conn)
        assert got == :binary.copy(<<i>>, 65_536)
      end

      close_quietly(conn)

      conn = connect!(url(proxy, tagged("/fragmented")), %{retry: false})
      assert {:data, {:text, "Hello, fragmented world"}} = next_event(conn)
      assert {:data, {:binary, bin}} = next_event(conn)
      assert bin == :binary.copy(:erlang.list_to_binary(Enum.to_list(0..255)), 4)
      close_quietly(conn)
    end

    test "delay mode: messages arrive late but intact" do
      server = start_server()
      proxy = start_proxy(server)
      conn = connect!(url(proxy, tagged("/echo")), %{retry: false})
      Peer.control(proxy, "mode delay 150")
      t0 = now_ms()
      echo!(conn, {:text, "slow"})
      # 150 ms each way: a lower bound, not a performance threshold
      assert now_ms() - t0 >= 290
      close_quietly(conn)
    end
  end

  ## the server restarted many times during a stream

  describe "server restarts" do
    @tag timeout: 600_000
    test "50 kill -9 and restarts on the same port: every one reconnects, no message lost, reordered or duplicated" do
      restarts = 50
      server = start_server()
      port = Peer.port(server)
      path = tagged("/seq?n=1000000&interval_ms=2")

      conn =
        connect!("ws://127.0.0.1:#{port}#{path}", %{
          retry: %{delay: 50, max_delay: 200, backoff_factor: 2, jitter: 0.1}
        })

      {events, lines, server} =
        Enum.reduce(1..restarts, {[], [], server}, fn i, {events, lines, server} ->
          # at least a few messages of the current connection
          ev = events_until(conn, &match?({:data, {:text, _}}, &1))
          ev2 = for _ <- 1..3, do: assert_data(conn)

          {:exited, _} = Peer.signal_and_wait(server, "KILL")
          lines = lines ++ Peer.lines(server)
          Peer.stop(server)

          ev3 = events_until(conn, &match?({:down, _, _}, &1))

          server =
            try do
              start_server(["--port", Integer.to_string(port)])
            rescue
              e ->
                flunk("restart #{i}: the server could not listen on #{port} again: #{inspect(e)}")
            end

          ev4 = events_until(conn, &match?({:up, _}, &1))
          {events ++ ev ++ ev2 ++ ev3 ++ ev4, lines, server}
        end)

      # a last batch from the final connection, then stop the stream
      events =
        events ++
          events_until(conn, &match?({:data, {:text, _}}, &1)) ++
          for(_ <- 1..3, do: assert_data(conn))

      close_quietly(conn)
      lines = lines ++ Peer.lines(server)
      Peer.stop(server)

      for ev <- events do
        assert match?({:data, {:text, _}}, ev) or match?({:down, _, _}, ev) or
                 match?({:up, _}, ev),
               "unexpected event #{inspect(ev)}"
      end

      assert Enum.count(events, &match?({:up, _}, &1)) == restarts

      # split the stream into connections: data between two ups (or the start)
      # and the next down
      segments =
        events
        |> Enum.chunk_while(
          {:open, []},
          fn
            {:data, {:text, m}}, {:open, acc} ->
              {:cont, {:open, [m | acc]}}

            {:data, {:text, m}}, {:down, _} ->
              flunk("message #{m} between a down and the next up")

            {:down, _, _}, {:open, acc} ->
              {:cont, Enum.reverse(acc), {:down, []}}

            {:down, _, _}, {:down, _} = s ->
              {:cont, s}

            {:up, _}, {:down, _} ->
              {:cont, {:open, []}}

            {:up, _} = up, {:open, _} ->
              flunk("#{inspect(up)} while open")
          end,
          fn {:open, acc} -> {:cont, Enum.reverse(acc), nil} end
        )

      assert length(segments) == restarts + 1

      sent =
        for line <- lines, ["SEQ", id, seq] <- [String.split(line)], reduce: %{} do
          acc -> Map.update(acc, id, String.to_integer(seq), &max(&1, String.to_integer(seq)))
        end

      ids =
        for {segment, k} <- Enum.with_index(segments) do
          parsed =
            for m <- segment do
              [id, seq] = String.split(m, ":")
              {id, String.to_integer(seq)}
            end

          [{id, _} | _] = parsed

          assert Enum.all?(parsed, fn {i, _} -> i == id end),
                 "connection #{k} mixes server connections"

          seqs = Enum.map(parsed, &elem(&1, 1))
          # in order, none missing, none duplicated, from the first message on
          assert seqs == Enum.to_list(0..(length(seqs) - 1)),
                 "connection #{k} (#{id}): #{inspect(seqs, limit: 30)}"

          # every message the server wrote before it was killed arrived
          assert Map.has_key?(sent, id)

          assert List.last(seqs) >= Map.fetch!(sent, id) or k == restarts,
                 "connection #{k} (#{id}): server sent up to #{sent[id]}, got up to #{List.last(seqs)}"

          id
        end

      assert length(Enum.uniq(ids)) == restarts + 1
    end
  end

  defp assert_data(conn) do
    case next_event(conn) do
      {:data, {:text, _}} = ev -> ev
      other -> flunk("expected a message, got #{inspect(other)}")
    end
  end

  ## the port program killed

  describe "port program killed" do
    test "kill -9: every connection comes back and its handle keeps working" do
      server = start_server()

      driver =
        start_supervised!(%{id: :resilience_driver, start: {:ws_port_driver, :start_link, []}})

      conns =
        for i <- 1..3 do
          conn =
            connect!(url(server, tagged("/echo")), %{
              driver: driver,
              retry: %{delay: 50, max_delay: 200, backoff_factor: 2, jitter: 0.1}
            })

          echo!(conn, {:text, "before #{i}"})
          conn
        end

      os_pid = port_program_pid(driver)
      {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(os_pid)])

      for conn <- conns do
        assert {:down, {:port_exit, 137}, %{attempt: _}} = next_event(conn)
        assert {:up, %{status: 101}} = next_event(conn)
      end

      new_pid = port_program_pid(driver)
      assert new_pid != os_pid

      for {conn, i} <- Enum.with_index(conns, 1) do
        echo!(conn, {:text, "after #{i}"})
        echo!(conn, {:binary, :crypto.strong_rand_bytes(70_000)})
        # the port program's counters start again; the reconnect is counted
        assert {:ok, %{state: _, reconnects: 1}} = :ws_port.info(conn)
      end

      # and once more, with a connection in its backoff when the program dies
      refuse = free_port()

      {:ok, waiting} =
        :ws_port.connect("ws://127.0.0.1:#{refuse}/", %{
          driver: driver,
          await: false,
          retry: %{delay: 60_000}
        })

      assert {:down, :econnrefused, %{attempt: 1}} = next_event(waiting)
      {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(new_pid)])

      for conn <- conns do
        assert {:down, {:port_exit, 137}, _} = next_event(conn)
        assert {:up, _} = next_event(conn)
        echo!(conn, {:text, "after the second kill"})
      end

      # the waiting connection is not lost by the restart: it is still there
      assert {:ok, _} = :ws_port.info(waiting)
      close_quietly(waiting)
      Enum.each(conns, &close_quietly/1)
    end

    test "the BEAM killed: no port program outlives it" do
      server = start_server()
      path = tagged("/echo")

      ebins =
        [:ws_port, :elixir, :logger]
        |> Enum.map(fn app -> app |> :code.lib_dir() |> Path.join("ebin") end)
        |> Enum.uniq()

      code = """
      {ok, _} = application:ensure_all_started(ws_port),
      {ok, C} = ws_port:connect(<<"#{url(server, path)}">>, \#{}),
      ok = ws_port:send(C, {text, <<"ping">>}),
      receive {ws_port, C, {text, <<"ping">>}} -> ok after 20000 -> halt(3) end,
      io:format("BEAM ~s~n", [os:getpid()]),
      [io:format("PORTPROG ~b ~s~n", [OsPid, Name])
       || P <- erlang:ports(),
          {os_pid, OsPid} <- [erlang:port_info(P, os_pid)],
          is_integer(OsPid),
          {name, Name} <- [erlang:port_info(P, name)]],
      io:format("READY~n"),
      receive after infinity -> ok end.
      """

      erl = System.find_executable("erl") || flunk("erl is not on PATH")

      args =
        ["-noshell", "-noinput"] ++
          Enum.flat_map(ebins, &["-pa", &1]) ++ ["-eval", String.replace(code, "\n", " ")]

      beam =
        Port.open({:spawn_executable, erl}, [
          :binary,
          :exit_status,
          {:line, 65_536},
          {:args, args}
        ])

      {:os_pid, beam_os_pid} = Port.info(beam, :os_pid)

      # make sure the separate BEAM does not outlive a failed test either
      on_exit(fn ->
        System.cmd("kill", ["-KILL", Integer.to_string(beam_os_pid)], stderr_to_stdout: true)
      end)

      lines = read_lines_until(beam, "READY", [], @wait)
      assert ["BEAM " <> pid_s] = Enum.filter(lines, &String.starts_with?(&1, "BEAM "))
      assert String.to_integer(pid_s) == beam_os_pid

      progs =
        for "PORTPROG " <> rest <- lines do
          [pid, name] = String.split(rest, " ", parts: 2)
          assert String.ends_with?(name, "ws_port"), "unexpected port program #{name}"
          String.to_integer(pid)
        end

      # the application's pool: at least one port program, all running
      assert progs != []
      starts = Map.new(progs, fn p -> {p, proc_start(p)} end)
      assert Enum.all?(starts, fn {_, s} -> s != :gone end)
      Peer.await_line(server, "OPEN #{path}")

      {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(beam_os_pid)])

      receive do
        {^beam, {:exit_status, _}} -> :ok
      after
        @wait -> flunk("the killed BEAM did not exit")
      end

      # every port program sees EOF on stdin and exits (a liveness bound)
      deadline = now_ms() + 5_000

      for p <- progs do
        assert wait_gone(p, starts[p], deadline),
               "port program #{p} still runs after the BEAM was killed"
      end

      # and it closed its connection properly (1001, going away) on its way out
      assert {1001, _} = Peer.await_closed(server, path)
    end
  end

  defp port_program_pid(driver) do
    %{os_pid: os_pid} = :ws_port_driver.program(driver)
    os_pid
  end

  defp read_lines_until(port, marker, acc, timeout) do
    receive do
      {^port, {:data, {:eol, ^marker}}} ->
        Enum.reverse(acc)

      {^port, {:data, {_, line}}} ->
        read_lines_until(port, marker, [line | acc], timeout)

      {^port, {:exit_status, s}} ->
        flunk("the separate BEAM exited (#{s}): #{Enum.join(Enum.reverse(acc), "\n")}")
    after
      timeout ->
        flunk("the separate BEAM printed no #{marker}: #{Enum.join(Enum.reverse(acc), "\n")}")
    end
  end

  # The start time of process `pid` (field 22 of /proc/pid/stat), :gone if
  # it does not exist or is a zombie (exited, not yet reaped).
  defp proc_start(pid) do
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} ->
        # the command name (field 2) is in parentheses and may hold spaces
        [_, rest] = String.split(stat, ") ", parts: 2)
        [state | fields] = String.split(rest, " ")
        if state in ["Z", "X"], do: :gone, else: Enum.at(fields, 18)

      {:error, _} ->
        :gone
    end
  end

  defp wait_gone(pid, start, deadline) do
    case proc_start(pid) do
      :gone ->
        true

      # the pid was reused by another process: ours is gone
      s when s != start ->
        true

      _ ->
        if now_ms() > deadline do
          false
        else
          Process.sleep(20)
          wait_gone(pid, start, deadline)
        end
    end
  end

  ## which failures are retried

  describe "retry_on" do
    test "401, 403 and 404 upgrade responses are not retried" do
      server = start_server()

      for code <- [401, 403, 404] do
        path = tagged("/status?code=#{code}")

        {:ok, conn} =
          :ws_port.connect(url(server, path), %{
            await: false,
            retry: %{delay: 50, max_delay: 100, backoff_factor: 2, jitter: 0.1}
          })

        assert {:closed, {:http_status, ^code, headers}} = next_event(conn),
               "#{code}: expected ws_port_closed first (no ws_port_down)"

        assert Enum.any?(headers, fn {k, _} -> String.downcase(k) == "www-authenticate" end)
        # no second attempt reaches the server
        assert await_count(server, "REFUSED #{path} ", 1) == 1
        Process.sleep(300)
        assert await_count(server, "REFUSED #{path} ", 1) == 1
        assert next_event(conn, 0) == :timeout
      end
    end

    test "a 4xx is retried when retry_on says so" do
      server = start_server()
      policy = %{delay: 50, max_delay: 100, backoff_factor: 2, jitter: 0.1, max_retries: 2}

      {:ok, conn} =
        :ws_port.connect(url(server, tagged("/status?code=401")), %{
          await: false,
          retry: policy,
          retry_on: [:http_4xx]
        })

      assert {:down, {:http_status, 401, _}, %{attempt: 1}} = next_event(conn)
      assert {:down, {:http_status, 401, _}, %{attempt: 2}} = next_event(conn)
      # max_retries: 2, then final
      assert {:closed, {:http_status, 401, _}} = next_event(conn)
    end

    test "TLS certificate failures are not retried" do
      certs = Certs.make!()
      on_exit(fn -> Certs.cleanup(certs) end)
      server = Peer.start!(:python, tls: {certs.untrusted.cert, certs.untrusted.key})
      on_exit(fn -> Peer.stop(server) end)

      {:ok, conn} =
        :ws_port.connect("wss://127.0.0.1:#{Peer.port(server)}/echo", %{
          await: false,
          tls: %{cacertfile: certs.ca.cert},
          retry: %{delay: 50, max_delay: 100, backoff_factor: 2, jitter: 0.1}
        })

      assert {:closed, {:tls, detail}} = next_event(conn)
      assert detail =~ ~r/verif/i
      # one TLS handshake only
      assert await_count(server, "SNI ", 1) == 1
      Process.sleep(300)
      assert await_count(server, "SNI ", 1) == 1
      assert next_event(conn, 0) == :timeout
    end

    test "503 and 429 are retried with the policy's delays until max_retries" do
      server = start_server()
      policy = %{delay: 100, max_delay: 1000, backoff_factor: 2, jitter: 0.1, max_retries: 2}

      for code <- [503, 429] do
        path = tagged("/status?code=#{code}")
        {:ok, conn} = :ws_port.connect(url(server, path), %{await: false, retry: policy})

        for attempt <- 1..2 do
          assert {:down, {:http_status, ^code, _}, %{attempt: ^attempt, delay_ms: d}} =
                   next_event(conn)

          assert_delay_in_policy(policy, attempt, d)
        end

        assert {:closed, {:http_status, ^code, _}} = next_event(conn)
        assert await_count(server, "REFUSED #{path} ", 3) == 3
      end
    end

    test "the default policy retries a 503 within 1 s (full jitter)" do
      server = start_server()
      {:ok, conn} = :ws_port.connect(url(server, tagged("/status?code=503")), %{await: false})
      assert {:down, {:http_status, 503, _}, %{attempt: 1, delay_ms: d}} = next_event(conn)

      assert_delay_in_policy(
        %{delay: 1000, backoff_factor: 2, max_delay: 30_000, jitter: :full},
        1,
        d
      )

      close_quietly(conn)
    end

    test "an awaited connect returns the first failure even with retries on" do
      server = start_server()
      policy = %{delay: 50, max_delay: 100, backoff_factor: 2, jitter: 0.1}
      status_url = url(server, tagged("/status?code=503"))
      refused_url = "ws://127.0.0.1:#{free_port()}/"

      proxy = start_proxy(server)
      Peer.control(proxy, "mode blackhole")
      silent_url = url(proxy, "/echo")

      # in a task, so that a connect that never returns fails the test in time
      task =
        Task.async(fn ->
          results = [
            :ws_port.connect(status_url, %{retry: policy, connect_timeout: 5_000}),
            :ws_port.connect(refused_url, %{retry: policy, connect_timeout: 5_000}),
            :ws_port.connect(silent_url, %{retry: policy, connect_timeout: 500})
          ]

          # and nothing follows: the connections were not left retrying
          Process.sleep(300)
          {results, Process.info(self(), :messages)}
        end)

      case Task.yield(task, @wait) || Task.shutdown(task, :brutal_kill) do
        {:ok, {results, {:messages, later}}} ->
          assert [{:error, {:http_status, 503, _}}, {:error, :econnrefused}, {:error, :timeout}] =
                   results

          assert later == []

        nil ->
          flunk("an awaited connect with retries on did not return within #{@wait} ms")
      end

      assert await_count(server, "REFUSED ", 1) == 1
      # the silent server was tried once
      assert await_count(proxy, "ACCEPT ", 1) == 1
    end

    test "await: false returns at once; ws_port_up follows" do
      server = start_server()
      {:ok, conn} = :ws_port.connect(url(server, tagged("/echo")), %{await: false})
      assert {:up, %{status: 101}} = next_event(conn)
      echo!(conn, {:text, "up"})
      close_quietly(conn)
    end
  end

  ## retry_fun

  describe "retry_fun" do
    test "sees its own keys carried through, its delay is used, and :stop ends the retries" do
      test_pid = self()

      fun = fn
        %{tries: 2} = s ->
          send(test_pid, {:retry_fun, s})
          :stop

        %{tries: n} = s ->
          send(test_pid, {:retry_fun, s})
          %{s | tries: n + 1, delay: 20 + 10 * n}
      end

      mine = {:carried, make_ref()}

      {:ok, conn} =
        :ws_port.connect("ws://127.0.0.1:#{free_port()}/", %{
          await: false,
          retry_fun: fun,
          retry_state: %{tries: 0, delay: 20, mine: mine}
        })

      assert {:down, :econnrefused, %{attempt: 1, delay_ms: 20}} = next_event(conn)
      assert {:down, :econnrefused, %{attempt: 2, delay_ms: 30}} = next_event(conn)
      assert {:closed, :econnrefused} = next_event(conn)

      assert_received {:retry_fun, %{tries: 0, delay: 20, mine: ^mine} = s0}
      assert_received {:retry_fun, %{tries: 1, delay: 20, mine: ^mine} = s1}
      assert_received {:retry_fun, %{tries: 2, delay: 30, mine: ^mine} = s2}
      assert Enum.map([s0, s1, s2], &map_size/1) == [3, 3, 3]
      refute_received {:retry_fun, _}
    end

    test "its state starts again from the initial value after a successful reconnect" do
      server = start_server()
      proxy = start_proxy(server)
      test_pid = self()

      fun = fn %{tries: n} = s ->
        send(test_pid, {:retry_fun, s})
        %{s | tries: n + 1, delay: 50}
      end

      conn =
        connect!(url(proxy, tagged("/echo")), %{
          retry_fun: fun,
          retry_state: %{tries: 0, delay: 50, extra: "x"}
        })

      echo!(conn, {:text, "one"})

      Peer.control(proxy, "listen off")
      Peer.control(proxy, "reset")

      for n <- 0..2 do
        assert_receive {:retry_fun, %{tries: ^n, extra: "x"}}, @wait
      end

      Peer.control(proxy, "listen on")
      assert {:up, _} = events_until(conn, &match?({:up, _}, &1)) |> List.last()
      flush_retry_fun()
      echo!(conn, {:text, "two"})

      Peer.control(proxy, "reset")
      assert_receive {:retry_fun, %{tries: 0, extra: "x", delay: 50}}, @wait
      assert {:up, _} = events_until(conn, &match?({:up, _}, &1)) |> List.last()
      echo!(conn, {:text, "three"})
      close_quietly(conn)
    end
  end

  defp flush_retry_fun do
    receive do
      {:retry_fun, _} -> flush_retry_fun()
    after
      0 -> :ok
    end
  end

  ## sends while disconnected

  describe "send_queue" do
    test "frames sent while reconnecting are written after the reconnect, in order" do
      server = start_server()
      proxy = start_proxy(server)
      policy = %{delay: 300, max_delay: 300, backoff_factor: 1, jitter: 0.1}
      conn = connect!(url(proxy, tagged("/echo")), %{retry: policy, send_queue: 10})
      echo!(conn, {:text, "before"})

      Peer.control(proxy, "listen off")
      Peer.control(proxy, "reset")
      assert {:down, :econnreset, %{attempt: 1}} = next_event(conn)

      frames =
        for i <- 1..10 do
          if rem(i, 2) == 0, do: {:binary, <<i, 0, i>>}, else: {:text, "queued #{i}"}
        end

      for f <- frames, do: assert(:ws_port.send(conn, f) == :ok)

      Peer.control(proxy, "listen on")
      events = events_until(conn, &match?({:up, _}, &1))

      assert Enum.all?(events, &(match?({:down, _, _}, &1) or match?({:up, _}, &1))),
             inspect(events)

      for {type, payload} <- frames do
        assert {:data, {^type, ^payload}} = next_event(conn)
      end

      echo!(conn, {:text, "after"})
      close_quietly(conn)
    end

    test "a full send_queue does not drop frames silently" do
      server = start_server()
      proxy = start_proxy(server)
      policy = %{delay: 300, max_delay: 300, backoff_factor: 1, jitter: 0.1}
      conn = connect!(url(proxy, tagged("/echo")), %{retry: policy, send_queue: 3})
      echo!(conn, {:text, "before"})

      Peer.control(proxy, "listen off")
      Peer.control(proxy, "reset")
      assert {:down, _, %{attempt: 1}} = next_event(conn)

      results = for i <- 1..6, do: {i, :ws_port.send(conn, {:text, "q#{i}"})}
      refused_now = for {i, r} <- results, r != :ok, do: i

      Peer.control(proxy, "listen on")
      events = events_until(conn, &match?({:up, _}, &1))
      Process.sleep(500)
      events = events ++ drain_events(conn)

      echoed = for {:data, {:text, "q" <> i}} <- events, do: String.to_integer(i)
      errors = for {:error, _} <- events, do: :error
      # in order; each frame either arrived or its loss was reported
      # the first 3 frames are kept, in order; the others are reported
      assert echoed == Enum.take(for({i, :ok} <- results, do: i), 3)

      assert length(echoed) + length(refused_now) + length(errors) == 6,
             "echoed #{inspect(echoed)}, refused #{inspect(refused_now)}, events #{inspect(events)}"

      close_quietly(conn)
    end

    test "without send_queue a send while reconnecting is refused with not_connected" do
      server = start_server()
      proxy = start_proxy(server)
      policy = %{delay: 300, max_delay: 300, backoff_factor: 1, jitter: 0.1}
      conn = connect!(url(proxy, tagged("/echo")), %{retry: policy})
      echo!(conn, {:text, "before"})

      Peer.control(proxy, "listen off")
      Peer.control(proxy, "reset")
      assert {:down, _, %{attempt: 1}} = next_event(conn)
      assert :ws_port.send(conn, {:text, "lost"}) == {:error, :not_connected}

      Peer.control(proxy, "listen on")
      assert {:up, _} = events_until(conn, &match?({:up, _}, &1)) |> List.last()
      echo!(conn, {:text, "after"})
      # the refused frame was not sent later either
      assert next_event(conn, 300) == :timeout
      close_quietly(conn)
    end
  end

  defp drain_events(conn) do
    case next_event(conn, 0) do
      :timeout -> []
      ev -> [ev | drain_events(conn)]
    end
  end
end
