# Quick start: connect, send, receive, close.
#
#   mix run examples/quickstart.exs ws://127.0.0.1:PORT/echo
#
# `make demo` starts a local echo server and runs this against it.
url = List.first(System.argv()) || "ws://127.0.0.1:8080/echo"

IO.puts("connecting to #{url}")
{:ok, conn} = WsPort.connect(url, connect_timeout: 5_000)
{:ok, info} = WsPort.info(conn)
IO.puts("connected: #{inspect(info)}")

:ok = WsPort.send_text(conn, "hello from ws_port")
:ok = WsPort.send_binary(conn, <<1, 2, 3, 4>>)
:ok = WsPort.send(conn, {:ping, "are you there?"})

for _ <- 1..2 do
  receive do
    {:ws_port, ^conn, {type, data}} -> IO.puts("received #{type}: #{inspect(data)}")
  after
    5_000 -> raise "no echo within 5 s"
  end
end

receive do
  {:ws_port_pong, ^conn, rtt_us} -> IO.puts("pong after #{rtt_us} µs")
after
  5_000 -> IO.puts("no pong within 5 s")
end

:ok = WsPort.close(conn)
IO.puts("closed")
