defmodule WsPort.Test.Proxies do
  @moduledoc """
  Real proxies from Debian for the tests, each instance started here on
  127.0.0.1 on a free port with its own configuration file in a temp dir:
  tinyproxy (HTTP CONNECT, optionally with BasicAuth) and dante's danted
  (SOCKS5). `stop/1` ends exactly the OS process it started, by its pid.
  """

  @tinyproxy "/usr/bin/tinyproxy"
  @danted "/usr/sbin/danted"

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

  @doc """
  Starts danted (SOCKS5) in the foreground. opts: `username: true` (the
  `username` method of RFC 1929: dante checks system users, see
  `system_user!/0`), port: n.
  """
  def dante!(opts \\ []) do
    dir = tmp_dir("danted")
    File.chmod!(dir, 0o755)
    port = Keyword.get_lazy(opts, :port, &free_port/0)
    log = Path.join(dir, "danted.log")
    conf = Path.join(dir, "danted.conf")
    method = if Keyword.get(opts, :username, false), do: "username", else: "none"

    File.write!(conf, """
    logoutput: #{log}
    internal: 127.0.0.1 port = #{port}
    external: 127.0.0.1
    clientmethod: none
    socksmethod: #{method}
    user.privileged: root
    user.unprivileged: nobody
    client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
    socks pass {
      from: 127.0.0.0/8 to: 0.0.0.0/0
      command: connect
      log: connect error
    }
    """)

    pidfile = Path.join(dir, "danted.pid")

    start!(%{kind: :danted, port: port, dir: dir, log: log, conf: conf}, @danted, [
      "-f",
      conf,
      "-p",
      pidfile
    ])
  end

  @doc """
  Makes a system user with a random password for dante's `username` method
  (dante checks the user database: getpwnam/getspnam and crypt). Needs root
  (CI runs as root); raises saying so otherwise. Returns {name, password};
  remove it with `remove_system_user/1`.
  """
  def system_user! do
    {uid, 0} = System.cmd("id", ["-u"])

    if String.trim(uid) != "0",
      do: raise("the SOCKS5 username tests make a system user for dante: run them as root")

    name = "wspsocks#{rem(System.unique_integer([:positive]), 100_000)}"
    pass = "pw-" <> Base.url_encode64(:crypto.strong_rand_bytes(9))

    {_, 0} =
      System.cmd(
        "/usr/sbin/useradd",
        ["-M", "-N", "-s", "/usr/sbin/nologin", "-d", "/nonexistent", name],
        stderr_to_stdout: true
      )

    {_, 0} =
      System.cmd("/bin/sh", [
        "-c",
        "printf '%s:%s\\n' \"$1\" \"$2\" | /usr/sbin/chpasswd",
        "sh",
        name,
        pass
      ])

    {name, pass}
  end

  def remove_system_user(name) do
    _ = System.cmd("/usr/sbin/userdel", [name], stderr_to_stdout: true)
    :ok
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
