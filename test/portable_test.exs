Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.PortableTest do
  @moduledoc """
  The portable build of the port program (`make WSP_PORTABLE=1`,
  priv/ws_port.portable): the paths used where Linux's are missing (macOS,
  the BSDs), built and run on Linux. It imports no Linux-only call, and the
  driver gives it its events socket as a filesystem path in a private
  directory (it refuses abstract names), removed once the program is
  connected. `make portable-test` runs the end-to-end suites on it.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.Peer

  @root Path.expand("..", __DIR__)
  @portable Path.join(@root, "priv/ws_port.portable")
  @default Path.join(@root, "priv/ws_port")
  @linux_only ~w(splice vmsplice tee pipe2 accept4 epoll_create epoll_create1 epoll_ctl
                 epoll_wait epoll_pwait eventfd signalfd timerfd_create timerfd_settime)

  setup_all do
    {_, 0} = System.cmd("make", ["-s", "portable"], cd: @root, stderr_to_stdout: true)
    {:ok, _} = Application.ensure_all_started(:ws_port)
    echo = Peer.start!(:python)
    on_exit(fn -> Peer.stop(echo) end)
    %{echo: echo}
  end

  defp check(bin) do
    System.cmd(Path.join(@root, "test/portable_check.sh"), [bin | @linux_only],
      stderr_to_stdout: true
    )
  end

  test "the portable binary imports no Linux-only call; the default one does (the check sees them)" do
    assert {out, 0} = check(@portable)
    assert out =~ "imports none of"
    assert {out, 1} = check(@default)
    assert out =~ "splice"
    assert out =~ "epoll_ctl"
  end

  defp cmdline(os_pid) do
    File.read!("/proc/#{os_pid}/cmdline") |> String.split(<<0>>, trim: true)
  end

  defp start_driver(id, program) do
    start_supervised!(%{
      id: id,
      start: {:ws_port_driver, :start_link, [id, [port_program: program]]}
    })
  end

  test "the portable binary gets a filesystem events socket in a private directory, removed after",
       ctx do
    tmp = Path.join(System.tmp_dir!(), "wsp_portable_#{System.unique_integer([:positive])}")
    File.mkdir_p!(tmp)
    old = System.get_env("TMPDIR")
    System.put_env("TMPDIR", tmp)

    on_exit(fn ->
      if old, do: System.put_env("TMPDIR", old), else: System.delete_env("TMPDIR")
      File.rm_rf!(tmp)
    end)

    driver = start_driver(:portable_driver, @portable)
    %{events: :socket, os_pid: os_pid} = :ws_port_driver.program(driver)
    ["port", "--events-socket", path] = tl(cmdline(os_pid))
    assert String.starts_with?(path, tmp <> "/ws_port.")
    # connected: the socket and its directory are gone
    assert File.ls!(tmp) == []

    # and the connection works, large messages (the splice path on Linux)
    # included
    url = "ws://127.0.0.1:#{Peer.port(ctx.echo)}/echo"
    {:ok, conn} = :ws_port.connect(url, %{driver: :portable_driver, retry: false})
    big = :crypto.strong_rand_bytes(3_000_000)

    for msg <- [{:text, "hello"}, {:binary, big}] do
      :ok = :ws_port.send(conn, msg)
      assert_receive {:ws_port, ^conn, ^msg}, 10_000
    end

    :ok = :ws_port.close(conn)

    # after a restart of the program: a path again, straight away
    System.cmd("kill", ["-9", Integer.to_string(os_pid)])
    new_pid = wait_new_pid(driver, os_pid)
    ["port", "--events-socket", path2] = tl(cmdline(new_pid))
    assert String.starts_with?(path2, tmp <> "/ws_port.")
    assert %{events: :socket} = :ws_port_driver.program(driver)
    assert File.ls!(tmp) == []
  end

  test "ws_port --build names the paths each binary uses" do
    assert {"portable\n", 0} = System.cmd(@portable, ["--build"])
    assert {"linux\n", 0} = System.cmd(@default, ["--build"])
  end

  test "the default Linux binary keeps the abstract name (the fast path)" do
    driver = start_driver(:linux_driver, @default)
    %{events: :socket, os_pid: os_pid} = :ws_port_driver.program(driver)
    ["port", "--events-socket", "@ws_port." <> _] = tl(cmdline(os_pid))
  end

  defp wait_new_pid(driver, old, tries \\ 200) do
    case :ws_port_driver.program(driver) do
      %{os_pid: pid} when is_integer(pid) and pid != old ->
        pid

      _ when tries > 0 ->
        Process.sleep(25)
        wait_new_pid(driver, old, tries - 1)
    end
  end
end
