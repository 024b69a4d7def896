Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.Test.Firehose do
  @moduledoc """
  Runs bench/out/firehose (built with `make -C bench build`) as an OS process
  with `--progress 100`, and keeps what it prints on stdout: the last
  `PROGRESS` line and the `DONE` line of every connection, by tag (see the
  header of bench/firehose.c for the fields). `stop/1` ends exactly the OS
  process it started, by its pid.
  """
  use GenServer

  @bench Path.expand("../bench", __DIR__)

  def exe, do: Path.join(@bench, "out/firehose")

  def build! do
    {out, status} = System.cmd("make", ["-s", "-C", @bench, "build"], stderr_to_stdout: true)
    if status != 0, do: raise("make -C bench build failed:\n#{out}")
    :ok
  end

  def start!(args \\ []) do
    {:ok, pid} = GenServer.start(__MODULE__, args)
    pid
  end

  def port(fh), do: GenServer.call(fh, :port)

  @doc "The last PROGRESS (or the DONE) fields of connection `tag`, or nil."
  def progress(fh, tag), do: GenServer.call(fh, {:progress, tag})

  @doc "Waits until `pred` holds for the PROGRESS/DONE fields of `tag`."
  def await(fh, tag, pred, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout
    await_loop(fh, tag, pred, deadline)
  end

  defp await_loop(fh, tag, pred, deadline) do
    p = progress(fh, tag)

    cond do
      p != nil and pred.(p) ->
        p

      System.monotonic_time(:millisecond) > deadline ->
        raise ExUnit.AssertionError,
          message: "firehose connection #{tag}: condition not met; last line #{inspect(p)}"

      true ->
        Process.sleep(20)
        await_loop(fh, tag, pred, deadline)
    end
  end

  def await_done(fh, tag, timeout \\ 30_000),
    do: await(fh, tag, &(&1.line == "DONE"), timeout)

  def stop(fh) do
    if Process.alive?(fh), do: GenServer.stop(fh, :normal, 20_000)
    :ok
  catch
    :exit, _ -> :ok
  end

  @impl true
  def init(args) do
    Process.flag(:trap_exit, true)

    port =
      Port.open({:spawn_executable, exe()}, [
        :binary,
        :exit_status,
        :use_stdio,
        :stderr_to_stdout,
        {:line, 65_536},
        {:args, ["--progress", "100" | args]}
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    receive do
      {^port, {:data, {:eol, "PORT " <> n}}} ->
        {:ok,
         %{port: port, os_pid: os_pid, number: String.to_integer(n), conns: %{}, exited: false}}

      {^port, {:exit_status, s}} ->
        {:stop, {:firehose_exited, s}}
    after
      10_000 -> {:stop, :no_port_line}
    end
  end

  @impl true
  def handle_call(:port, _from, s), do: {:reply, s.number, s}

  def handle_call({:progress, tag}, _from, s), do: {:reply, Map.get(s.conns, tag), s}

  @impl true
  def handle_info({port, {:data, {:eol, line}}}, %{port: port} = s) do
    case String.split(line, " ") do
      [kind | fields] when kind in ["PROGRESS", "DONE"] ->
        f =
          for field <- fields, into: %{line: kind} do
            [k, v] = String.split(field, "=", parts: 2)
            {String.to_atom(k), if(k == "tag" or k == "mode", do: v, else: String.to_integer(v))}
          end

        # a DONE line is final: later PROGRESS lines of the tag cannot come
        tag = f.tag

        case s.conns do
          %{^tag => %{line: "DONE"}} -> {:noreply, s}
          _ -> {:noreply, put_in(s.conns[tag], f)}
        end

      _ ->
        {:noreply, s}
    end
  end

  def handle_info({port, {:exit_status, _}}, %{port: port} = s),
    do: {:noreply, %{s | exited: true}}

  def handle_info(_, s), do: {:noreply, s}

  @impl true
  def terminate(_, %{exited: true}), do: :ok

  def terminate(_, s) do
    System.cmd("kill", ["-TERM", Integer.to_string(s.os_pid)], stderr_to_stdout: true)

    receive do
      {port, {:exit_status, _}} when port == s.port -> :ok
    after
      10_000 -> System.cmd("kill", ["-KILL", Integer.to_string(s.os_pid)], stderr_to_stdout: true)
    end
  end
end

defmodule WsPort.FlowControlTest do
  @moduledoc """
  End-to-end flow control with the real port program and real servers on
  127.0.0.1 (bench/out/firehose: stream, sink and echo modes, with
  sequence-numbered payloads, see the header of bench/firehose.c).

  - receive: a firehose floods 1 GiB (16384 x 64 KiB) as fast as it can to
    a consumer with `{active, 10}` refills that sleeps 1 ms per message for
    its first 3000 messages, then reads at full speed: memory stays bounded
    (@mem_bound beyond the baseline, sampled every 20 ms: the consumer's
    process memory plus the refc binaries it holds, the BEAM's
    `:erlang.memory(:total)`, the port program's VmRSS), the server's bytes
    written stay within @lag_bound of what the consumer has taken (TCP
    backpressure reached the server), and every byte arrives, in order.
  - `{active, false}` / `{active, once}` / `{active, N}` over ws and wss:
    nothing is delivered while passive and the server's writes stall.
  - the BEAM not draining the port's stdout (played by
    test/peers/stall_reader.py, which runs the port program itself and
    stops reading its stdout for 3 s): with `{active, true}` the port
    program stops reading the socket once its output queue is full, the
    server stalls, the port's RSS stays bounded, and afterwards every
    message arrives in order.
  - send: a producer sends 512 MiB of 64 KiB frames as fast as it can to a
    server that reads one chunk every 100 ms for 4 s, then drains: the
    producer is blocked (what it has handed to `ws_port:send/2` stays within
    @lag_bound of what the server has read), memory stays bounded, the
    server gets every byte in order.
  - a server that never reads: its sender waits, but another connection of
    the same driver still echoes, and the stuck connection can be closed.
  - wss: four streams (20 B .. 100 KB messages) on one port program, each
    consumer with a credit of 3 and pauses: the connections share the port
    program's TLS receive buffer, and every byte of each arrives in order.

  Every connection has `retry: false` (a stream's close 1000 is final) and
  all go through one dedicated driver (one port program, whose
  RSS is measured). `WS_PORT_PROGRAM` runs another build of the port
  program (e.g. priv/ws_port.asan).
  """
  use ExUnit.Case, async: false
  import Bitwise

  alias WsPort.Test.Firehose

  @moduletag timeout: 600_000
  @wait 30_000
  # memory bound beyond the baseline taken before the connection opens
  @mem_bound 64 <<< 20
  # bytes in flight between the two ends (socket buffers, port queues;
  # measured <= 9 MiB)
  @lag_bound 32 <<< 20
  @size 65_536
  @frame_len @size + 10
  @seq_mod 251

  setup_all do
    Firehose.build!()
    {:ok, _} = Application.ensure_all_started(:ws_port)
    certs = WsPort.Test.Certs.make!()
    on_exit(fn -> WsPort.Test.Certs.cleanup(certs) end)
    ws = Firehose.start!()
    wss = Firehose.start!(["--tls", certs.server.cert, certs.server.key])
    on_exit(fn -> Firehose.stop(ws) end)
    on_exit(fn -> Firehose.stop(wss) end)

    program = System.get_env("WS_PORT_PROGRAM")
    start_opts = if program in [nil, ""], do: [], else: [port_program: Path.expand(program)]

    driver =
      start_supervised!(%{
        id: :flow_driver,
        start: {:ws_port_driver, :start_link, [:ws_port_flow_driver, start_opts]}
      })

    # payload of message Seq = <<Seq::64, binary_part(pattern, rem(Seq, 251), size - 8)>>
    pattern = for k <- 0..(@size - 8 + @seq_mod), into: <<>>, do: <<rem(k, @seq_mod)>>

    %{
      fh: %{ws: ws, wss: wss},
      base: %{
        ws: "ws://127.0.0.1:#{Firehose.port(ws)}",
        wss: "wss://127.0.0.1:#{Firehose.port(wss)}"
      },
      driver: driver,
      pattern: pattern
    }
  end

  ## helpers

  defp unlink(pid), do: Process.unlink(pid)

  defp tag(name), do: "#{name}_#{System.unique_integer([:positive])}"

  defp connect!(url, opts) do
    # retry: false: a server's close 1000 at the end of a stream is final
    # (with retries the connection would come back and stream again)
    opts =
      Map.merge(%{driver: :ws_port_flow_driver, tls: %{verify: :verify_none}, retry: false}, opts)

    case :ws_port.connect(url, opts) do
      {:ok, conn} -> conn
      other -> flunk("connect #{url} failed: #{inspect(other)}")
    end
  end

  defp os_pid(driver) do
    %{os_pid: pid} = :ws_port_driver.program(driver)
    pid
  end

  defp rss(os_pid) do
    "/proc/#{os_pid}/status"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      case String.split(line) do
        ["VmRSS:", kib, "kB"] -> String.to_integer(kib) * 1024
        _ -> nil
      end
    end)
  end

  # A process's heap plus the refc binaries it references.
  defp proc_mem(pid) do
    case Process.info(pid, [:memory, :binary]) do
      [memory: m, binary: bins] ->
        m + (bins |> Enum.uniq_by(&elem(&1, 0)) |> Enum.map(&elem(&1, 1)) |> Enum.sum())

      nil ->
        0
    end
  end

  defp expected_payload(pattern, seq),
    do: <<seq::64, binary_part(pattern, rem(seq, @seq_mod), @size - 8)::binary>>

  # Samples memory every 20 ms until stopped; keeps the maxima. `lag` is a
  # fun giving bytes in flight between the two ends (or nil: not sampled).
  defp start_sampler(os_pid, proc, lag) do
    parent = self()

    spawn_link(fn ->
      sampler_loop(%{os_pid: os_pid, proc: proc, lag: lag, parent: parent}, %{
        beam: 0,
        rss: 0,
        proc: 0,
        lag: 0,
        samples: 0
      })
    end)
  end

  defp sampler_loop(cfg, max) do
    receive do
      {:stop, from} -> send(from, {:sampled, max})
    after
      20 ->
        lag = if cfg.lag, do: cfg.lag.(), else: 0

        max = %{
          beam: Kernel.max(max.beam, :erlang.memory(:total)),
          rss: Kernel.max(max.rss, rss(cfg.os_pid)),
          proc: Kernel.max(max.proc, proc_mem(cfg.proc)),
          lag: Kernel.max(max.lag, lag || 0),
          samples: max.samples + 1
        }

        sampler_loop(cfg, max)
    end
  end

  defp stop_sampler(pid) do
    send(pid, {:stop, self()})

    receive do
      {:sampled, max} -> max
    after
      5_000 -> flunk("sampler did not answer")
    end
  end

  defp baseline(os_pid) do
    :erlang.garbage_collect()
    %{beam: :erlang.memory(:total), rss: rss(os_pid)}
  end

  defp mib(bytes), do: Float.round(bytes / (1 <<< 20), 1)

  ## receive: a 1 GiB flood into a slow consumer

  # The consumer owns the connection: {active, 10}, refilled on passive.
  defp consume(conn, seq, pattern, slow, counter) do
    receive do
      {:ws_port, ^conn, {:binary, <<^seq::64, rest::binary>>}} ->
        if rest != binary_part(pattern, rem(seq, @seq_mod), @size - 8),
          do: exit({:corrupt_message, seq})

        :counters.add(counter, 1, 1)
        if seq < slow, do: Process.sleep(1)
        consume(conn, seq + 1, pattern, slow, counter)

      {:ws_port, ^conn, {type, data}} ->
        exit({:out_of_order, seq, type, binary_part(data, 0, min(8, byte_size(data)))})

      {:ws_port_passive, ^conn} ->
        :ok = :ws_port.setopts(conn, active: 10)
        consume(conn, seq, pattern, slow, counter)

      {:ws_port_closed, ^conn, reason} ->
        {seq, reason}
    after
      @wait -> {seq, :timeout}
    end
  end

  for transport <- [:ws, :wss] do
    @tag transport: transport
    test "1 GiB flood into a slow {active, 10} consumer (#{transport}): bounded memory, every byte in order",
         ctx do
      transport = ctx.transport
      fh = ctx.fh[transport]
      n = 16_384
      slow = 3_000
      t = tag("flood")
      url = "#{ctx.base[transport]}/?n=#{n}&size=#{@size}&seq=1&tag=#{t}"
      os_pid = os_pid(ctx.driver)
      base = baseline(os_pid)
      counter = :counters.new(1, [])
      test_pid = self()

      consumer =
        spawn_link(fn ->
          conn = connect!(url, %{active: 10})
          send(test_pid, {:connected, self()})
          send(test_pid, {:consumed, self(), consume(conn, 0, ctx.pattern, slow, counter)})
        end)

      assert_receive {:connected, ^consumer}, @wait

      lag = fn ->
        got = :counters.get(counter, 1)

        case Firehose.progress(fh, t) do
          # only while the consumer is slow: the stream is throttled by it
          %{sent_bytes: sent} when got < slow -> sent - got * @frame_len
          _ -> nil
        end
      end

      sampler = start_sampler(os_pid, consumer, lag)
      t0 = System.monotonic_time(:millisecond)
      assert_receive {:consumed, ^consumer, {got, reason}}, 300_000
      ms = System.monotonic_time(:millisecond) - t0
      max = stop_sampler(sampler)

      assert got == n, "got #{got} of #{n} messages (#{inspect(reason)})"
      assert {:remote, 1000, _} = reason
      done = Firehose.await_done(fh, t)
      assert done.complete == 1 and done.sent_msgs == n

      IO.puts(
        "\nflow #{transport} flood: #{n} x #{@size} B in #{ms} ms, #{max.samples} samples; " <>
          "max beyond baseline: BEAM #{mib(max.beam - base.beam)} MiB, port RSS #{mib(max.rss - base.rss)} MiB, " <>
          "consumer #{mib(max.proc)} MiB; max server lead while slow #{mib(max.lag)} MiB"
      )

      assert max.samples > 10
      assert max.beam - base.beam < @mem_bound
      assert max.rss - base.rss < @mem_bound
      assert max.proc < @mem_bound
      assert max.lag < @lag_bound, "the server got #{mib(max.lag)} MiB ahead of the slow consumer"
    end
  end

  ## passive: nothing delivered, the server stalls

  defp sent_bytes(fh, t), do: Firehose.progress(fh, t).sent_bytes

  # The server's bytes written do not move for 600 ms, and are far below
  # what it would send.
  defp assert_stalled(fh, t, total) do
    Firehose.await(fh, t, &(&1.sent_bytes > 0), @wait)
    s0 = stalled_value(fh, t, 50)
    assert s0 < total and s0 < @lag_bound, "server wrote #{s0} of #{total} bytes"
    s0
  end

  defp stalled_value(_fh, _t, 0), do: flunk("the server's writes never stalled")

  defp stalled_value(fh, t, tries) do
    s0 = sent_bytes(fh, t)
    Process.sleep(600)

    case sent_bytes(fh, t) do
      ^s0 -> s0
      _ -> stalled_value(fh, t, tries - 1)
    end
  end

  defp recv_seq(conn, seq, pattern) do
    receive do
      {:ws_port, ^conn, {:binary, data}} ->
        assert data == expected_payload(pattern, seq), "message #{seq} out of order or corrupt"
    after
      @wait -> flunk("message #{seq} not delivered")
    end
  end

  for transport <- [:ws, :wss] do
    @tag transport: transport
    test "{active, false}, once and N (#{transport}): nothing delivered while passive, the server stalls",
         ctx do
      transport = ctx.transport
      fh = ctx.fh[transport]
      n = 4_000
      total = n * @frame_len
      t = tag("passive")
      url = "#{ctx.base[transport]}/?n=#{n}&size=#{@size}&seq=1&tag=#{t}"
      conn = connect!(url, %{active: false})

      s0 = assert_stalled(fh, t, total)
      refute_received {:ws_port, ^conn, _}

      # once: exactly one message, then passive again (no more data)
      :ok = :ws_port.setopts(conn, active: :once)
      recv_seq(conn, 0, ctx.pattern)
      refute_receive {:ws_port, ^conn, {_, _}}, 500

      # N: N messages then {ws_port_passive, Conn}
      :ok = :ws_port.setopts(conn, active: 5)
      for seq <- 1..5, do: recv_seq(conn, seq, ctx.pattern)
      assert_receive {:ws_port_passive, ^conn}, @wait
      refute_receive {:ws_port, ^conn, {_, _}}, 500
      s1 = assert_stalled(fh, t, total)
      assert s1 >= s0

      # false again after true: stops again
      :ok = :ws_port.setopts(conn, active: true)
      recv_seq(conn, 6, ctx.pattern)
      :ok = :ws_port.setopts(conn, active: false)
      # what was already on its way may still arrive; then nothing
      next = drain_seq(conn, 7, ctx.pattern, 300)
      assert next < n
      assert_stalled(fh, t, total)
      refute_received {:ws_port, ^conn, {_, _}}

      # everything else, in order
      :ok = :ws_port.setopts(conn, active: true)
      for seq <- next..(n - 1), do: recv_seq(conn, seq, ctx.pattern)
      assert_receive {:ws_port_closed, ^conn, {:remote, 1000, _}}, @wait
      done = Firehose.await_done(fh, t)
      assert done.complete == 1
    end
  end

  # Receives in-order messages until none comes for `quiet` ms; returns the
  # next expected seq.
  defp drain_seq(conn, seq, pattern, quiet) do
    receive do
      {:ws_port, ^conn, {:binary, data}} ->
        assert data == expected_payload(pattern, seq)
        drain_seq(conn, seq + 1, pattern, quiet)
    after
      quiet -> seq
    end
  end

  ## send: a fast producer, a slow server

  defp produce(conn, seq, n, pattern, counter, acc) when seq < n do
    t0 = System.monotonic_time(:microsecond)

    :ok =
      :ws_port.send(
        conn,
        {:binary, [<<seq::64>>, binary_part(pattern, rem(seq, @seq_mod), @size - 8)]}
      )

    us = System.monotonic_time(:microsecond) - t0
    :counters.add(counter, 1, 1)

    acc = %{
      max_us: max(acc.max_us, us),
      over_10ms: acc.over_10ms + if(us > 10_000, do: 1, else: 0)
    }

    produce(conn, seq + 1, n, pattern, counter, acc)
  end

  defp produce(_conn, _seq, _n, _pattern, _counter, acc), do: acc

  test "send: a fast producer to a slow server is blocked, memory stays bounded, every byte arrives in order",
       ctx do
    fh = ctx.fh.ws
    n = 8_192
    slow_secs = 4
    t = tag("sendbp")

    url =
      "#{ctx.base.ws}/?mode=sink&seq=1&size=#{@size}&slow_ms=100&slow_secs=#{slow_secs}&tag=#{t}"

    os_pid = os_pid(ctx.driver)
    base = baseline(os_pid)
    counter = :counters.new(1, [])
    test_pid = self()

    producer =
      spawn_link(fn ->
        conn = connect!(url, %{})
        send(test_pid, {:connected, self(), conn})
        t0 = System.monotonic_time(:millisecond)
        acc = produce(conn, 0, n, ctx.pattern, counter, %{max_us: 0, over_10ms: 0})
        ms = System.monotonic_time(:millisecond) - t0
        send(test_pid, {:produced, self(), Map.put(acc, :ms, ms)})

        receive do
          :close -> :ws_port.close(conn)
        end
      end)

    assert_receive {:connected, ^producer, _conn}, @wait

    # only during the slow phase (PROGRESS lines are up to 100 ms old: at
    # full speed that staleness alone would be megabytes)
    slow_end = System.monotonic_time(:millisecond) + (slow_secs * 1000 - 300)

    lag = fn ->
      case Firehose.progress(fh, t) do
        %{recv_bytes: got} ->
          if System.monotonic_time(:millisecond) < slow_end,
            do: :counters.get(counter, 1) * @size - got

        nil ->
          nil
      end
    end

    sampler = start_sampler(os_pid, producer, lag)
    assert_receive {:produced, ^producer, stats}, 300_000
    # everything reaches the server (it drains at full speed after slow_secs)
    Firehose.await(fh, t, &(&1.recv_msgs == n), 120_000)
    max = stop_sampler(sampler)
    send(producer, :close)
    done = Firehose.await_done(fh, t)

    IO.puts(
      "\nflow send: #{n} x #{@size} B handed to ws_port:send/2 in #{stats.ms} ms; longest send #{div(stats.max_us, 1000)} ms, " <>
        "#{stats.over_10ms} sends > 10 ms; max beyond baseline: BEAM #{mib(max.beam - base.beam)} MiB, " <>
        "port RSS #{mib(max.rss - base.rss)} MiB, producer #{mib(max.proc)} MiB; max producer lead #{mib(max.lag)} MiB"
    )

    assert done.recv_msgs == n and done.errors == 0,
           "server: #{done.recv_msgs} of #{n} messages, #{done.errors} sequence/pattern errors"

    # blocked: 512 MiB cannot be handed over while the server reads slowly
    assert stats.ms >= (slow_secs - 1) * 1000
    assert stats.max_us >= 50_000
    assert max.lag < @lag_bound, "the producer got #{mib(max.lag)} MiB ahead of the server"
    assert max.beam - base.beam < @mem_bound
    assert max.rss - base.rss < @mem_bound
    assert max.proc < @mem_bound
  end

  ## the BEAM does not drain the port's stdout

  defp port_program do
    case System.get_env("WS_PORT_PROGRAM") do
      p when p in [nil, ""] -> Path.join(:code.priv_dir(:ws_port), "ws_port")
      p -> Path.expand(p)
    end
  end

  test "stdout not drained: the port program stops reading its sockets, memory stays bounded, nothing lost",
       ctx do
    fh = ctx.fh.ws
    n = 4_096
    t = tag("stall")
    url = "#{ctx.base.ws}/?n=#{n}&size=#{@size}&seq=1&tag=#{t}"
    cmd = :erlang.term_to_binary({:connect, 1, url, [{:active, true}]})
    python = System.find_executable("python3") || flunk("python3 is not on PATH")
    script = Path.join(WsPort.Test.Peer.peers_dir(), "stall_reader.py")

    reader =
      Port.open({:spawn_executable, python}, [
        :binary,
        :exit_status,
        {:line, 4096},
        {:args, [script, port_program(), Base.encode16(cmd), "3", Integer.to_string(@size)]}
      ])

    assert_receive {^reader, {:data, {:eol, "BASE_RSS " <> base_kib}}}, @wait
    base_rss = String.to_integer(base_kib) * 1024
    assert_receive {^reader, {:data, {:eol, "PAUSE_START"}}}, @wait
    # nobody reads the port's stdout: the server's writes stall
    stalled = assert_stalled(fh, t, n * @frame_len)
    assert_receive {^reader, {:data, {:eol, "PAUSE_END"}}}, @wait
    assert_receive {^reader, {:data, {:eol, "RESULT " <> result}}}, 120_000
    assert_receive {^reader, {:exit_status, 0}}, @wait

    r =
      for kv <- String.split(result), into: %{} do
        [k, v] = String.split(kv, "=")
        {k, String.to_integer(v)}
      end

    IO.puts(
      "\nflow stdout stall: server stalled at #{mib(stalled)} MiB written; port VmRSS max #{mib(r["max_rss_kib"] * 1024)} MiB " <>
        "(#{mib(base_rss)} MiB before the connect); #{r["msgs"]} messages, #{r["errors"]} errors"
    )

    assert r["msgs"] == n and r["errors"] == 0 and r["closed"] == 1
    assert r["max_rss_kib"] * 1024 < base_rss + @mem_bound
    assert Firehose.await_done(fh, t).complete == 1
  end

  ## a server that stops reading

  # A peer that never reads: its sender waits ({busy, Id}), but another
  # connection of the same driver still sends and gets its echo, and the
  # stuck connection can be closed. (Before per-connection busy/ready, the
  # port stopped reading stdin for the whole program at 16 MiB unsent, and
  # all of this blocked; `mix test --only stuck_peer` runs this alone.)
  @tag :stuck_peer
  test "send: a server that stops reading does not stop the driver's other connections", ctx do
    t = tag("stuck")
    # reads one chunk, then nothing for 1000 s
    url = "#{ctx.base.ws}/?mode=sink&size=#{@size}&slow_ms=1000000&slow_secs=1000&tag=#{t}"
    test_pid = self()
    other = connect!("#{ctx.base.ws}/?mode=echo&tag=#{tag("bystander")}", %{})

    producer =
      spawn_link(fn ->
        conn = connect!(url, %{})
        send(test_pid, {:conn, conn})
        for _ <- 1..1024, do: :ok = :ws_port.send(conn, {:binary, :binary.copy(<<7>>, @size)})
        send(test_pid, :all_sent)
      end)

    assert_receive {:conn, stuck}, @wait
    refute_receive :all_sent, 3_000

    # the bystander on the same driver: an echo round trip (the send in a
    # task, in case it blocks; the echo comes to the owner, this process)
    t0 = System.monotonic_time(:microsecond)
    sender = Task.async(fn -> :ws_port.send(other, {:text, "still there?"}) end)
    send_result = Task.yield(sender, 5_000) || Task.shutdown(sender, :brutal_kill)

    echo_result =
      receive do
        {:ws_port, ^other, {:text, "still there?"}} ->
          {:ok, System.monotonic_time(:microsecond) - t0}
      after
        5_000 -> nil
      end

    closer = Task.async(fn -> :ws_port.close(stuck) end)
    close_result = Task.yield(closer, 5_000) || Task.shutdown(closer, :brutal_kill)

    IO.puts(
      "\nflow stuck peer: bystander send #{inspect(send_result)}, echo (us) #{inspect(echo_result)}, " <>
        "close of the stuck connection #{inspect(close_result)}"
    )

    unlink(producer)
    Process.exit(producer, :kill)
    assert send_result == {:ok, :ok}, "the bystander's send did not return within 5 s"
    assert {:ok, _} = echo_result, "the bystander connection could not echo within 5 s"

    assert close_result == {:ok, :ok},
           "ws_port:close/1 of the stuck connection did not return within 5 s"
  end

  ## wss: streams of one port program sharing its TLS receive buffer

  # The port program reads TLS records many at a time into one buffer for
  # all connections (c_src/wsp_tls.c); a connection that runs out of credit
  # leaves its records there until another one needs the buffer, which moves
  # them to a buffer of the first one's own. Four streams of different
  # message sizes (a record is 16 KiB: messages of 20 B up to 6 records),
  # each consumer with a credit of 3 and a pause now and then.
  test "wss: four streams on one port program, consumers with little credit: every byte of each in order",
       ctx do
    counts = [{65_536, 1_500}, {100_000, 800}, {1_000, 20_000}, {20, 20_000}]
    big = 100_000
    pattern = for k <- 0..(big - 8 + @seq_mod), into: <<>>, do: <<rem(k, @seq_mod)>>
    parent = self()

    consumers =
      for {{size, n}, i} <- Enum.with_index(counts) do
        url = "#{ctx.base.wss}/?n=#{n}&size=#{size}&seq=1&tag=#{tag("tlsrx")}"

        pid =
          spawn_link(fn ->
            conn = connect!(url, %{active: 3})
            send(parent, {:done, self(), take_turns(conn, 0, size, pattern, 5 + i)})
          end)

        {pid, size, n}
      end

    for {pid, size, n} <- consumers do
      assert_receive {:done, ^pid, {got, reason}}, 300_000
      assert got == n, "#{size} B stream: got #{got} of #{n} messages (#{inspect(reason)})"
      assert {:remote, 1000, _} = reason
    end
  end

  defp take_turns(conn, seq, size, pattern, pause_every) do
    receive do
      {:ws_port, ^conn, {:binary, <<^seq::64, rest::binary>>}} ->
        if rest != binary_part(pattern, rem(seq, @seq_mod), size - 8),
          do: exit({:corrupt_message, size, seq})

        take_turns(conn, seq + 1, size, pattern, pause_every)

      {:ws_port, ^conn, {type, data}} ->
        exit({:out_of_order, size, seq, type, binary_part(data, 0, min(8, byte_size(data)))})

      {:ws_port_passive, ^conn} ->
        if rem(div(seq, 3), pause_every) == 0, do: Process.sleep(1)
        :ok = :ws_port.setopts(conn, active: 3)
        take_turns(conn, seq, size, pattern, pause_every)

      {:ws_port_closed, ^conn, reason} ->
        {seq, reason}
    after
      @wait -> {seq, :timeout}
    end
  end
end
