# RFC 6455 conformance client, run by test/conformance.sh:
#
#   mix run test/conformance_client.exs PORT
#
# Connects with ws_port to every case of test/peers/raw_peer.py listening on
# 127.0.0.1:PORT, echoes every message it gets (so the peer sees what was
# delivered to the BEAM), waits for each connection to end, then sends the
# peer one line per case with the reason the BEAM was given
# ("<case> <kind> <code or ->") on /report. The peer judges; its summary is
# printed here and its exit status is the result of the run.

defmodule WsPort.Conformance.Client do
  @case_wait 30_000

  def main([port]) do
    {:ok, _} = Application.ensure_all_started(:ws_port)
    base = "ws://127.0.0.1:#{port}"

    names = fetch_list(base)
    IO.puts("#{length(names)} cases")

    lines =
      for name <- names do
        reason = run_case(base, name)
        line = "#{name} #{describe(reason)}"
        IO.puts("  #{line}    #{inspect(reason, limit: 8, printable_limit: 80)}")
        line
      end

    report(base, Enum.join(lines, "\n"))
  end

  def main(_) do
    IO.puts(:stderr, "usage: mix run test/conformance_client.exs PORT")
    System.halt(2)
  end

  defp fetch_list(base) do
    {:ok, conn} = :ws_port.connect(base <> "/list", %{retry: false})

    receive do
      {:ws_port, ^conn, {:text, list}} ->
        :ws_port.close(conn)
        String.split(list, "\n", trim: true)
    after
      @case_wait -> raise "no case list from the peer"
    end
  end

  defp run_case(base, name) do
    case :ws_port.connect(base <> "/case/" <> name, %{retry: false}) do
      {:ok, conn} -> echo_until_closed(conn)
      {:error, reason} -> {:connect_error, reason}
    end
  end

  defp echo_until_closed(conn) do
    receive do
      {:ws_port, ^conn, msg} ->
        _ = :ws_port.send(conn, msg)
        echo_until_closed(conn)

      {:ws_port_closed, ^conn, reason} ->
        reason
    after
      @case_wait ->
        :ws_port.close(conn)
        :client_timeout
    end
  end

  defp describe({kind, code, _}) when is_atom(kind) and is_integer(code), do: "#{kind} #{code}"
  defp describe(reason) when is_tuple(reason), do: "#{elem(reason, 0)} -"
  defp describe(reason) when is_atom(reason), do: "#{reason} -"
  defp describe(_), do: "unknown -"

  defp report(base, text) do
    {:ok, conn} = :ws_port.connect(base <> "/report", %{retry: false})
    :ok = :ws_port.send(conn, {:text, text})

    receive do
      {:ws_port, ^conn, {:text, summary}} -> IO.puts("peer: #{summary}")
    after
      @case_wait -> raise "no summary from the peer"
    end

    receive do
      {:ws_port_closed, ^conn, _} -> :ok
    after
      5_000 -> :ws_port.close(conn)
    end
  end
end

WsPort.Conformance.Client.main(System.argv())
