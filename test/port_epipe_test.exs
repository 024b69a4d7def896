defmodule WsPort.PortEpipeTest do
  @moduledoc """
  The port program dies and a command is written to it before the emulator
  has seen it exit: the write fails (EPIPE), the emulator closes the port
  with `{'EXIT', Port, epipe}` and sends no `exit_status`. The driver must
  restart the program all the same (found by the chaos test: the driver
  kept the dead port, dropped every command and never answered
  `program_stats/1`).

  The scenario: the driver is suspended, its program is SIGKILLed and this
  process writes to the port at once; it counts when the driver's mailbox
  then holds the port's EXIT and no `exit_status` (otherwise the emulator
  was faster and the ordinary restart path runs: tried again).
  """
  use ExUnit.Case, async: false

  @attempts 30

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    :ok
  end

  test "a port closed by epipe (no exit_status) is restarted" do
    # up to @attempts tries, until the epipe path was taken 3 times
    reproduced =
      Enum.reduce_while(1..@attempts, 0, fn i, n ->
        n = if attempt(i), do: n + 1, else: n
        if n >= 3, do: {:halt, n}, else: {:cont, n}
      end)

    assert reproduced > 0, "the write never failed before the emulator saw the exit"
  end

  # true when the epipe path was taken (and the driver recovered)
  defp attempt(i) do
    name = :"ws_port_epipe_test_#{i}_#{System.unique_integer([:positive])}"
    {:ok, driver} = :ws_port_driver.start_link(name, [])
    Process.unlink(driver)
    %{port: port, os_pid: os_pid} = :ws_port_driver.program(name)
    :ok = :sys.suspend(driver)
    {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(os_pid)])
    write_until_closed(port, 0)
    # let the emulator deliver whatever it will
    Process.sleep(200)
    {:messages, msgs} = Process.info(driver, :messages)
    epipe = Enum.any?(msgs, &match?({:EXIT, ^port, :epipe}, &1))
    status = Enum.any?(msgs, &match?({^port, {:exit_status, _}}, &1))
    :ok = :sys.resume(driver)

    if epipe and not status do
      # the driver restarts its program: a new OS process that answers
      assert {:ok, %{connections: 0}} = :ws_port_driver.program_stats(name),
             "the driver kept its dead port"

      %{os_pid: new_pid} = :ws_port_driver.program(name)
      assert is_integer(new_pid) and new_pid != os_pid
    end

    GenServer.stop(driver)
    epipe and not status
  catch
    :exit, {:timeout, _} ->
      flunk("the driver kept its dead port (program_stats/1 got no answer)")
  end

  defp write_until_closed(port, n) when n < 100_000 do
    Port.command(port, :ws_port_proto.stats_cmd(0))
    write_until_closed(port, n + 1)
  rescue
    ArgumentError -> :closed
  end

  defp write_until_closed(_port, _n), do: :still_open
end
