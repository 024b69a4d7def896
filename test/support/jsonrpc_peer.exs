defmodule WsPort.Test.JsonRpcPeer do
  @moduledoc """
  Starts test/peers/jsonrpc_server.py (python3-websockets) as an OS process
  on 127.0.0.1, reads its `PORT <n>` line and keeps every later line so
  tests can wait for what the server saw (`OPEN`, `RECV`, `SUBSCRIBE`,
  `TEST`, `BEAT`, `CLOSED`).

  `start/1` takes `port:` to listen on a given port (to restart a server
  where its clients expect it). `stop/1` ends exactly the OS process it
  started, by its pid (SIGTERM, then SIGKILL); the server also exits when
  its stdin closes (`--exit-on-eof`), so it cannot outlive the BEAM.
  """
  use GenServer

  @script Path.expand("../peers/jsonrpc_server.py", __DIR__)
  @python "/usr/bin/python3"

  @doc "Starts a server; `port: n` to choose its port. Returns the peer pid."
  def start!(opts \\ []) do
    {:ok, pid} = GenServer.start(__MODULE__, opts)
    pid
  end

  @doc "The TCP port it listens on."
  def port(peer), do: GenServer.call(peer, :port)

  @doc "A ws:// URL of this server for `path`."
  def url(peer, path), do: "ws://127.0.0.1:#{port(peer)}#{path}"

  @doc "Every line printed so far, oldest first."
  def lines(peer), do: GenServer.call(peer, :lines)

  @doc "How many lines printed so far start with `prefix`."
  def count(peer, prefix), do: Enum.count(lines(peer), &String.starts_with?(&1, prefix))

  @doc """
  Waits for the `nth` (1-based) line starting with `prefix` and returns it;
  fails the test after `timeout` ms.
  """
  def await_line(peer, prefix, nth \\ 1, timeout \\ 15_000) do
    GenServer.call(peer, {:await, prefix, nth}, timeout)
  catch
    :exit, {:timeout, _} ->
      raise ExUnit.AssertionError,
        message:
          "server printed no #{nth}. line #{inspect(prefix)} within #{timeout} ms; lines:\n" <>
            Enum.join(lines(peer), "\n")
  end

  @doc "Ends the server process (by its OS pid) and this GenServer."
  def stop(peer) do
    if Process.alive?(peer), do: GenServer.stop(peer, :normal, 30_000)
    :ok
  catch
    :exit, _ -> :ok
  end

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    args = [@script, "--exit-on-eof"] ++ if(p = opts[:port], do: ["--port", "#{p}"], else: [])

    port =
      Port.open({:spawn_executable, @python}, [
        :binary,
        :exit_status,
        :use_stdio,
        {:line, 65_536},
        {:args, args}
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    state = %{
      port: port,
      os_pid: os_pid,
      exited: false,
      lines: [],
      partial: "",
      waiters: [],
      number: nil
    }

    receive_port_line(state)
  end

  defp receive_port_line(state) do
    receive do
      {port, {:data, data}} when port == state.port ->
        state = add(state, data)

        case Enum.find_value(state.lines, fn l -> match?("PORT " <> _, l) && l end) do
          nil -> receive_port_line(state)
          "PORT " <> n -> {:ok, %{state | number: String.to_integer(String.trim(n))}}
        end

      {port, {:exit_status, status}} when port == state.port ->
        {:stop, {:exited, status, Enum.reverse(state.lines)}}
    after
      20_000 ->
        kill(state)
        {:stop, :no_port_line}
    end
  end

  defp add(state, {:noeol, part}), do: %{state | partial: state.partial <> part}

  defp add(state, {:eol, part}),
    do: %{state | lines: [state.partial <> part | state.lines], partial: ""}

  defp nth_match(lines, prefix, nth) do
    lines |> Enum.reverse() |> Enum.filter(&String.starts_with?(&1, prefix)) |> Enum.at(nth - 1)
  end

  @impl true
  def handle_call(:port, _from, state), do: {:reply, state.number, state}
  def handle_call(:lines, _from, state), do: {:reply, Enum.reverse(state.lines), state}

  def handle_call({:await, prefix, nth}, from, state) do
    case nth_match(state.lines, prefix, nth) do
      nil -> {:noreply, %{state | waiters: [{from, prefix, nth} | state.waiters]}}
      line -> {:reply, line, state}
    end
  end

  @impl true
  def handle_info({port, {:data, data}}, %{port: port} = state) do
    state = add(state, data)

    waiters =
      Enum.reject(state.waiters, fn {from, prefix, nth} ->
        case nth_match(state.lines, prefix, nth) do
          nil -> false
          line -> GenServer.reply(from, line) || true
        end
      end)

    {:noreply, %{state | waiters: waiters}}
  end

  def handle_info({port, {:exit_status, _}}, %{port: port} = state),
    do: {:noreply, %{state | exited: true}}

  def handle_info(_, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state), do: kill(state)

  defp kill(%{exited: true}), do: :ok

  defp kill(state) do
    signal(state.os_pid, "TERM")

    receive do
      {port, {:exit_status, _}} when port == state.port -> :ok
    after
      5_000 ->
        signal(state.os_pid, "KILL")

        receive do
          {port, {:exit_status, _}} when port == state.port -> :ok
        after
          5_000 -> :ok
        end
    end
  end

  defp signal(os_pid, sig),
    do: System.cmd("kill", ["-#{sig}", Integer.to_string(os_pid)], stderr_to_stdout: true)
end
