# A supervised, self-healing client: WsPort.Client + WsPort.ClientSupervisor.
#
#   mix run examples/client_example.exs ws://127.0.0.1:PORT/rpc
#
# against the Deribit-like test server (examples/client_demo.sh starts one):
#   /usr/bin/python3 test/peers/jsonrpc_server.py
#
# The client asks for a JSON-RPC heartbeat every second (Deribit itself wants
# whole seconds, at least 10), answers the server's test requests, subscribes
# in handle_connect/2 (so again after every reconnect), and is supervised.
url = List.first(System.argv()) || "ws://127.0.0.1:8080/rpc"

defmodule Example.Ticker do
  use WsPort.Client

  @subscribe ~s({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["trades.BTC-PERPETUAL.raw"]}})

  @impl true
  def handle_connect(info, state) do
    IO.puts("connected (reconnects so far: #{info.reconnects}), subscribing")
    {:reply, [{:text, @subscribe}], state}
  end

  @impl true
  def handle_frame({:text, json}, state) do
    IO.puts("server says: #{json}")
    {:ok, state}
  end

  @impl true
  def handle_disconnect(%{reason: reason, attempt: attempt}, state) do
    IO.puts("connection lost (#{inspect(reason)}), attempt #{attempt}; reconnecting")
    {:ok, state}
  end
end

# In an application this line is a child of your supervision tree.
{:ok, _sup} = WsPort.ClientSupervisor.start_link()

{:ok, client} =
  WsPort.ClientSupervisor.start_client(url,
    module: Example.Ticker,
    heartbeat: %{type: :deribit, interval: 1_000},
    retry: [delay: 500, max_delay: 5_000]
  )

Process.sleep(3_500)

:ok =
  WsPort.ClientSupervisor.send_balanced(
    {:text, ~s({"jsonrpc":"2.0","id":2,"method":"public/test","params":{}})}
  )

Process.sleep(300)

health = WsPort.Client.health(client)

IO.puts(
  "health: connected=#{health.connected} rtt=#{inspect(health.last_rtt_us)} µs " <>
    "misses=#{health.misses} reconnects=#{health.reconnects} errors=#{health.errors} uptime=#{health.uptime_ms} ms"
)

:ok = WsPort.ClientSupervisor.stop_client(client)
IO.puts("stopped; clients left: #{length(WsPort.ClientSupervisor.list_clients())}")
