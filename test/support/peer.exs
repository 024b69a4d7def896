defmodule WsPort.Test.Peer do
  @moduledoc """
  Starts one test server (test/peers/ws_server.py, ws_server.js or
  raw_peer.py) as an OS process, reads the `PORT <n>` line it prints, and
  keeps every later stdout line so tests can wait for what the server saw
  (`OPEN <path>`, `CLOSED <path> <code> <reason>`, `SENT <path>`).

  `stop/1` ends exactly the OS process it started (by its pid): SIGTERM, then
  SIGKILL if it has not exited. The servers are also started with
  `--exit-on-eof`, so they exit if the BEAM dies and closes their stdin.
  """
  use GenServer

  @peers_dir Path.expand("../peers", __DIR__)
  @python "/usr/bin/python3"

  def peers_dir, do: @peers_dir

  @doc """
  kind: :python | :node | :raw | :evil (test/peers/evil_server.py) | :jsonrpc
  (test/peers/jsonrpc_server.py) | :phoenix (test/peers/phoenix_server.py). opts: tls: {cert, key}, client_ca: path,
  args: extra arguments.
  """
  def start(kind, opts \\ []) do
    case GenServer.start(__MODULE__, {kind, opts}) do
      {:ok, pid} -> {:ok, pid}
      {:error, reason} -> raise "could not start #{kind} peer: #{inspect(reason)}"
    end
  end

  def start!(kind, opts \\ []) do
    {:ok, pid} = start(kind, opts)
    pid
  end

  @doc """
  Starts test/peers/fault_proxy.py in front of `target_port` (127.0.0.1) and
  returns the peer; `port/1` is the proxy's own port. Drive it with
  `control/2` (`"mode blackhole"`, `"reset"`, `"refuse on"`, ...).
  """
  def start_proxy!(target_port) when is_integer(target_port),
    do: start!(:proxy, args: ["--target", "127.0.0.1:#{target_port}"])

  @doc """
  Writes one command line to the peer's stdin (test/peers/fault_proxy.py) and
  returns its answer line (`"OK ..."`); raises on `"ERR ..."`.
  """
  def control(peer, line, timeout \\ 15_000) do
    case GenServer.call(peer, {:control, line}, timeout) do
      "OK" <> _ = ok -> ok
      other -> raise "peer command #{inspect(line)} failed: #{inspect(other)}"
    end
  end

  @doc """
  Sends `signal` ("KILL", "TERM", ...) to the peer's OS process and waits
  until it has exited (then `stop/1` has nothing left to do).
  """
  def signal_and_wait(peer, signal \\ "KILL", timeout \\ 15_000),
    do: GenServer.call(peer, {:kill, signal, timeout}, timeout + 5_000)

  def port(peer), do: GenServer.call(peer, :port)
  def os_pid(peer), do: GenServer.call(peer, :os_pid)
  def lines(peer), do: GenServer.call(peer, :lines)

  @doc """
  Waits for (and returns) the first stdout line, seen before or after this
  call, for which `pred` returns a truthy value. A string `pred` matches a
  line that starts with it. Fails the test after `timeout` ms.
  """
  def await_line(peer, pred, timeout \\ 15_000)

  def await_line(peer, prefix, timeout) when is_binary(prefix),
    do: await_line(peer, &String.starts_with?(&1, prefix), timeout)

  def await_line(peer, pred, timeout) when is_function(pred, 1) do
    GenServer.call(peer, {:await, pred}, timeout)
  catch
    :exit, {:timeout, _} ->
      raise ExUnit.AssertionError,
        message:
          "peer printed no matching line within #{timeout} ms; lines so far:\n" <>
            Enum.join(lines(peer), "\n")
  end

  @doc """
  Waits until at least `n` stdout lines match `regex` (lines reach us
  asynchronously: a client may see the answer before the server's line
  about it is read here), then returns every matching line. Fails the test
  after `timeout` ms.
  """
  def await_count(peer, regex, n, timeout \\ 15_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    await_count_until(peer, regex, n, timeout, deadline)
  end

  defp await_count_until(peer, regex, n, timeout, deadline) do
    found = Enum.filter(lines(peer), &(&1 =~ regex))

    cond do
      length(found) >= n ->
        found

      System.monotonic_time(:millisecond) > deadline ->
        raise ExUnit.AssertionError,
          message:
            "peer printed #{length(found)} of #{n} lines matching #{inspect(regex)} " <>
              "within #{timeout} ms; lines so far:\n" <> Enum.join(lines(peer), "\n")

      true ->
        Process.sleep(20)
        await_count_until(peer, regex, n, timeout, deadline)
    end
  end

  @doc "The `CLOSED <path> <code> <reason>` line for `path`, parsed."
  def await_closed(peer, path, timeout \\ 15_000) do
    line = await_line(peer, "CLOSED #{path} ", timeout)
    rest = String.replace_prefix(line, "CLOSED #{path} ", "")

    case String.split(rest, " ", parts: 2) do
      [code] -> {String.to_integer(code), ""}
      [code, reason] -> {String.to_integer(code), reason}
    end
  end

  def stop(peer) do
    if Process.alive?(peer), do: GenServer.stop(peer, :normal, 30_000)
    :ok
  catch
    :exit, _ -> :ok
  end

  ## GenServer

  @impl true
  def init({kind, opts}) do
    Process.flag(:trap_exit, true)
    {exe, args} = command(kind, opts)

    port =
      Port.open({:spawn_executable, exe}, [
        :binary,
        :exit_status,
        :use_stdio,
        {:line, 1_048_576},
        {:args, args},
        {:cd, @peers_dir}
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    state = %{port: port, os_pid: os_pid, exited: false, lines: [], partial: "", waiters: []}

    case wait_for_port_line(state) do
      {:ok, number, state} ->
        {:ok, Map.put(state, :number, number)}

      {:error, why, state} ->
        kill(state)
        {:stop, why}
    end
  end

  defp command(:python, opts),
    do: {@python, [Path.join(@peers_dir, "ws_server.py"), "--exit-on-eof"] ++ tls_args(opts)}

  defp command(:raw, opts),
    do:
      {@python,
       [Path.join(@peers_dir, "raw_peer.py"), "--exit-on-eof"] ++ Keyword.get(opts, :args, [])}

  defp command(:evil, opts),
    do:
      {@python,
       [Path.join(@peers_dir, "evil_server.py"), "--exit-on-eof"] ++ Keyword.get(opts, :args, [])}

  defp command(:jsonrpc, opts),
    do:
      {@python,
       [Path.join(@peers_dir, "jsonrpc_server.py"), "--exit-on-eof"] ++
         Keyword.get(opts, :args, [])}

  defp command(:phoenix, opts),
    do: {@python, [Path.join(@peers_dir, "phoenix_server.py"), "--exit-on-eof"] ++ tls_args(opts)}

  defp command(:proxy, opts),
    do: {@python, [Path.join(@peers_dir, "fault_proxy.py")] ++ Keyword.get(opts, :args, [])}

  defp command(:node, opts) do
    ensure_node_modules!()
    node = System.find_executable("node") || raise "node is not on PATH"
    {node, [Path.join(@peers_dir, "ws_server.js"), "--exit-on-eof"] ++ tls_args(opts)}
  end

  defp tls_args(opts) do
    tls =
      case Keyword.get(opts, :tls) do
        nil -> []
        {cert, key} -> ["--tls", cert, key]
      end

    ca =
      case Keyword.get(opts, :client_ca) do
        nil -> []
        file -> ["--client-ca", file]
      end

    tls ++ ca ++ Keyword.get(opts, :args, [])
  end

  @doc "Installs the node peer's `ws` package with npm when it is missing."
  def ensure_node_modules! do
    unless File.exists?(Path.join(@peers_dir, "node_modules/ws/package.json")) and
             File.exists?(Path.join(@peers_dir, "node_modules/phoenix/package.json")) do
      npm = System.find_executable("npm") || raise "npm is not on PATH"

      {out, status} =
        System.cmd(npm, ["ci", "--no-audit", "--no-fund", "--prefix", @peers_dir],
          stderr_to_stdout: true
        )

      if status != 0, do: raise("npm ci --prefix #{@peers_dir} failed:\n#{out}")
    end

    :ok
  end

  defp wait_for_port_line(state) do
    receive do
      {port, {:data, data}} when port == state.port ->
        state = add_data(state, data)

        case Enum.find_value(state.lines, &port_number/1) do
          nil -> wait_for_port_line(state)
          n -> {:ok, n, state}
        end

      {port, {:exit_status, status}} when port == state.port ->
        {:error, {:exited, status, Enum.reverse(state.lines)}, %{state | exited: true}}
    after
      30_000 -> {:error, {:no_port_line, Enum.reverse(state.lines)}, state}
    end
  end

  defp port_number("PORT " <> n), do: String.to_integer(String.trim(n))
  defp port_number(_), do: nil

  defp add_data(state, {:noeol, part}), do: %{state | partial: state.partial <> part}

  defp add_data(state, {:eol, part}) do
    %{state | lines: [state.partial <> part | state.lines], partial: ""}
  end

  @impl true
  def handle_call(:port, _from, state), do: {:reply, state.number, state}
  def handle_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}
  def handle_call(:lines, _from, state), do: {:reply, Enum.reverse(state.lines), state}

  def handle_call({:control, line}, from, state) do
    # The answer is the first OK/ERR line printed after the command is written.
    true = Port.command(state.port, line <> "\n")
    pred = &(String.starts_with?(&1, "OK") or String.starts_with?(&1, "ERR"))
    {:noreply, %{state | waiters: state.waiters ++ [{from, pred}]}}
  end

  def handle_call({:kill, _signal, _timeout}, _from, %{exited: true} = state),
    do: {:reply, {:exited, :already}, state}

  def handle_call({:kill, signal, timeout}, _from, state) do
    signal(state.os_pid, signal)

    receive do
      {port, {:exit_status, status}} when port == state.port ->
        {:reply, {:exited, status}, %{state | exited: true}}
    after
      timeout -> {:reply, {:error, :still_running}, state}
    end
  end

  def handle_call({:await, pred}, from, state) do
    case Enum.find(Enum.reverse(state.lines), pred) do
      nil -> {:noreply, %{state | waiters: [{from, pred} | state.waiters]}}
      line -> {:reply, line, state}
    end
  end

  @impl true
  def handle_info({port, {:data, data}}, %{port: port} = state) do
    state = add_data(state, data)

    case data do
      {:eol, _} ->
        [line | _] = state.lines

        {done, waiting} = Enum.split_with(state.waiters, fn {_, pred} -> pred.(line) end)
        Enum.each(done, fn {from, _} -> GenServer.reply(from, line) end)
        {:noreply, %{state | waiters: waiting}}

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({port, {:exit_status, _}}, %{port: port} = state),
    do: {:noreply, %{state | exited: true}}

  def handle_info({:EXIT, _, _}, state), do: {:noreply, state}
  def handle_info(_, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state), do: kill(state)

  defp kill(%{exited: true}), do: :ok

  defp kill(state) do
    signal(state.os_pid, "TERM")

    receive do
      {port, {:exit_status, _}} when port == state.port -> :ok
    after
      10_000 ->
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

defmodule WsPort.Test.Certs do
  @moduledoc "Certificates made at test time by test/peers/make_certs.sh (openssl CLI)."

  @doc """
  Makes a fresh directory under the system temp dir with ca, server, wrongname,
  nosan, untrusted and client certificates and returns a map name => %{cert:, key:}
  plus :dir. Remove it with `cleanup/1`.
  """
  def make! do
    dir =
      Path.join(
        System.tmp_dir!(),
        "ws_port_certs_#{System.unique_integer([:positive])}_#{System.os_time()}"
      )

    script = Path.join(WsPort.Test.Peer.peers_dir(), "make_certs.sh")
    {out, status} = System.cmd("/bin/sh", [script, dir], stderr_to_stdout: true)
    if status != 0, do: raise("make_certs.sh failed (#{status}):\n#{out}")

    for name <- ~w(ca server wrongname nosan untrusted client)a, into: %{dir: dir} do
      cert = Path.join(dir, "#{name}.pem")
      key = Path.join(dir, "#{name}.key")
      true = File.regular?(cert) and File.regular?(key)
      {name, %{cert: cert, key: key}}
    end
  end

  def cleanup(%{dir: dir}), do: File.rm_rf!(dir)
end

defmodule WsPort.Test.JSON do
  @moduledoc "A small JSON decoder (no hex packages on these machines)."

  def decode!(text) do
    {value, rest} = value(skip_ws(text))

    case skip_ws(rest) do
      "" -> value
      other -> raise ArgumentError, "trailing data in JSON: #{inspect(other)}"
    end
  end

  defp skip_ws(<<c, rest::binary>>) when c in ~c[ \t\r\n], do: skip_ws(rest)
  defp skip_ws(s), do: s

  defp value("{" <> rest), do: object(skip_ws(rest), %{})
  defp value("[" <> rest), do: array(skip_ws(rest), [])
  defp value("\"" <> rest), do: string(rest, [])
  defp value("true" <> rest), do: {true, rest}
  defp value("false" <> rest), do: {false, rest}
  defp value("null" <> rest), do: {nil, rest}

  defp value(s) do
    case Regex.run(~r/^-?\d+(\.\d+)?([eE][-+]?\d+)?/, s) do
      [num | _] ->
        rest = binary_part(s, byte_size(num), byte_size(s) - byte_size(num))

        n =
          if String.contains?(num, [".", "e", "E"]),
            do: String.to_float(normalise(num)),
            else: String.to_integer(num)

        {n, rest}

      nil ->
        raise ArgumentError, "bad JSON at #{inspect(String.slice(s, 0, 20))}"
    end
  end

  defp normalise(num),
    do: if(String.contains?(num, "."), do: num, else: String.replace(num, ~r/[eE]/, ".0e"))

  defp object("}" <> rest, acc), do: {acc, rest}

  defp object("\"" <> rest, acc) do
    {key, rest} = string(rest, [])
    ":" <> rest = skip_ws(rest)
    {val, rest} = value(skip_ws(rest))
    acc = Map.put(acc, key, val)

    case skip_ws(rest) do
      "," <> rest -> object(skip_ws(rest), acc)
      "}" <> rest -> {acc, rest}
    end
  end

  defp array("]" <> rest, acc), do: {Enum.reverse(acc), rest}

  defp array(s, acc) do
    {val, rest} = value(s)

    case skip_ws(rest) do
      "," <> rest -> array(skip_ws(rest), [val | acc])
      "]" <> rest -> {Enum.reverse([val | acc]), rest}
    end
  end

  defp string("\"" <> rest, acc), do: {IO.iodata_to_binary(Enum.reverse(acc)), rest}

  defp string("\\u" <> <<hex::binary-4, rest::binary>>, acc) do
    code = String.to_integer(hex, 16)

    case {code, rest} do
      {hi, "\\u" <> <<lo_hex::binary-4, rest2::binary>>} when hi in 0xD800..0xDBFF ->
        lo = String.to_integer(lo_hex, 16)
        string(rest2, [<<0x10000 + (hi - 0xD800) * 0x400 + (lo - 0xDC00)::utf8>> | acc])

      _ ->
        string(rest, [<<code::utf8>> | acc])
    end
  end

  defp string("\\" <> <<c, rest::binary>>, acc) do
    ch =
      case c do
        ?" -> "\""
        ?\\ -> "\\"
        ?/ -> "/"
        ?b -> "\b"
        ?f -> "\f"
        ?n -> "\n"
        ?r -> "\r"
        ?t -> "\t"
      end

    string(rest, [ch | acc])
  end

  defp string(<<c, rest::binary>>, acc), do: string(rest, [c | acc])
end
