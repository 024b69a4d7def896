defmodule WsPort.Test.Proxies do
  @moduledoc """
  Real proxies from Debian for the tests, each instance started here on
  127.0.0.1 on a free port with its own configuration file in a temp dir:
  tinyproxy (HTTP CONNECT, optionally with BasicAuth) and dante's danted
  (SOCKS5). `stop/1` ends exactly the OS process it started, by its pid.
  """

  @tinyproxy "/usr/bin/tinyproxy"

  @doc "A free TCP port on 127.0.0.1 (bound, read, released)."
  def free_port do
    {:ok, s} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, reuseaddr: true)
    {:ok, port} = :inet.port(s)
    :ok = :gen_tcp.close(s)
    port
  end

  @doc """
  Starts tinyproxy. opts: auth: {user, pass}, port: n (default a free one).
  Returns %{kind: :tinyproxy, port:, os_pid:, dir:, log:, conf:}.
  """
  def tinyproxy!(opts \\ []) do
    dir = tmp_dir("tinyproxy")
    port = Keyword.get_lazy(opts, :port, &free_port/0)
    log = Path.join(dir, "tinyproxy.log")

    auth =
      case Keyword.get(opts, :auth) do
        nil -> ""
        {user, pass} -> "BasicAuth #{user} #{pass}\n"
      end

    conf = Path.join(dir, "tinyproxy.conf")

    File.write!(conf, """
    Port #{port}
    Listen 127.0.0.1
    Timeout 600
    MaxClients 100
    LogFile "#{log}"
    LogLevel Connect
    #{auth}
    """)

    start!(%{kind: :tinyproxy, port: port, dir: dir, log: log, conf: conf}, @tinyproxy, [
      "-d",
      "-c",
      conf
    ])
  end

  @doc "Starts the same proxy again (same port and configuration) after a kill."
  def restart!(%{kind: :tinyproxy} = p), do: start!(p, @tinyproxy, ["-d", "-c", p.conf])

  defp start!(p, exe, args) do
    port =
      Port.open({:spawn_executable, exe}, [:binary, :exit_status, :stderr_to_stdout, args: args])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    p = Map.merge(p, %{os_pid: os_pid, port_ref: port})
    wait_listening!(p, 200)
    p
  end

  defp wait_listening!(p, 0), do: raise("#{p.kind} did not listen on #{p.port}: #{log(p)}")

  defp wait_listening!(p, n) do
    case :gen_tcp.connect({127, 0, 0, 1}, p.port, [active: false], 1000) do
      {:ok, s} ->
        :gen_tcp.close(s)

      {:error, _} ->
        Process.sleep(25)
        wait_listening!(p, n - 1)
    end
  end

  @doc "The proxy's log so far."
  def log(p), do: File.read(p.log) |> elem_or("")

  defp elem_or({:ok, s}, _), do: s
  defp elem_or(_, d), do: d

  @doc "SIGKILLs the proxy (by its pid) and waits until it has exited."
  def kill!(p) do
    {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(p.os_pid)])
    wait_gone(p.os_pid, 400)
  end

  @doc "Ends the proxy (by its pid) and removes its directory."
  def stop(p) do
    _ = System.cmd("kill", ["-TERM", Integer.to_string(p.os_pid)], stderr_to_stdout: true)
    wait_gone(p.os_pid, 200)
    _ = System.cmd("kill", ["-KILL", Integer.to_string(p.os_pid)], stderr_to_stdout: true)
    File.rm_rf(p.dir)
    :ok
  end

  defp wait_gone(_pid, 0), do: :ok

  defp wait_gone(pid, n) do
    # /proc/<pid> of an exited child stays until it is reaped (the port
    # reaps it): a zombie counts as gone
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} ->
        if stat =~ ~r/^\d+ \(.*\) Z/ do
          :ok
        else
          Process.sleep(25)
          wait_gone(pid, n - 1)
        end

      {:error, _} ->
        :ok
    end
  end

  defp tmp_dir(kind) do
    dir =
      Path.join(
        System.tmp_dir!(),
        "ws_port_#{kind}_#{System.unique_integer([:positive])}_#{System.os_time()}"
      )

    File.mkdir_p!(dir)
    dir
  end
end
