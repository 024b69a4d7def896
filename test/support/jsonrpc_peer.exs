Code.require_file("peer.exs", __DIR__)

defmodule WsPort.Test.JsonRpcPeer do
  @moduledoc """
  test/peers/jsonrpc_server.py (python3-websockets) as a WsPort.Test.Peer of
  kind `:jsonrpc`, with the helpers the client tests use: every line it
  printed is kept so tests can wait for what the server saw (`OPEN`, `RECV`,
  `SUBSCRIBE`, `TEST`, `BEAT`, `CLOSED`). `start!/1` takes `port:` to listen
  on a given port (to restart a server where its clients expect it).
  """
  alias WsPort.Test.Peer

  @doc "Starts a server; `port: n` to choose its port. Returns the peer pid."
  def start!(opts \\ []) do
    args = if p = opts[:port], do: ["--port", "#{p}"], else: []
    Peer.start!(:jsonrpc, args: args)
  end

  defdelegate port(peer), to: Peer
  defdelegate lines(peer), to: Peer
  defdelegate stop(peer), to: Peer

  @doc "A ws:// URL of this server for `path`."
  def url(peer, path), do: "ws://127.0.0.1:#{port(peer)}#{path}"

  @doc "How many lines printed so far start with `prefix`."
  def count(peer, prefix), do: Enum.count(lines(peer), &String.starts_with?(&1, prefix))

  @doc """
  Waits for the `nth` (1-based) line starting with `prefix` and returns it;
  fails the test after `timeout` ms.
  """
  def await_line(peer, prefix, nth \\ 1, timeout \\ 15_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    await_nth(peer, prefix, nth, deadline, timeout)
  end

  defp await_nth(peer, prefix, nth, deadline, timeout) do
    case peer |> lines() |> Enum.filter(&String.starts_with?(&1, prefix)) |> Enum.drop(nth - 1) do
      [line | _] ->
        line

      [] ->
        if System.monotonic_time(:millisecond) >= deadline do
          raise ExUnit.AssertionError,
            message:
              "server printed no #{nth}. line #{inspect(prefix)} within #{timeout} ms; lines:\n" <>
                Enum.join(lines(peer), "\n")
        end

        Process.sleep(10)
        await_nth(peer, prefix, nth, deadline, timeout)
    end
  end
end
