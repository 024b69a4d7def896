# A script using only WsPort.Phoenix (the synchronous Phoenix Channels API).
#
#   mix run examples/phoenix_client.exs ws://127.0.0.1:PORT/socket/websocket [CA_FILE]
#
# against the Phoenix-protocol test server (it speaks what a Phoenix 1.7/1.8
# socket speaks; test/phoenix_server_test.exs proves it with phoenix.js):
#
#   /usr/bin/python3 test/peers/phoenix_server.py          # prints PORT <n>
#   /usr/bin/python3 test/peers/phoenix_server.py --tls server.pem server.key
#
# With a wss:// URL, CA_FILE is the CA that signed the server's certificate.
# Against your own Phoenix app, use its topics and events instead of the
# test channel's (echo, error, shout, crash, drop_socket).
[url | rest] = System.argv() ++ ["ws://127.0.0.1:4000/socket/websocket"]
tls = for ca <- Enum.take(rest, 1), do: {:cacertfile, ca}

opts = [params: %{token: "good"}, tls: tls]
{:ok, socket} = WsPort.Phoenix.connect(url, opts)
IO.puts("connected to #{url}")

{:ok, reply} = WsPort.Phoenix.join(socket, "room:lobby", %{"user" => "script"})
IO.puts("joined room:lobby: #{inspect(reply)}")

{:ok, echo} = WsPort.Phoenix.push(socket, "room:lobby", "echo", %{"hello" => "world"})
IO.puts("echo reply: #{inspect(echo)}")
{:error, err} = WsPort.Phoenix.push(socket, "room:lobby", "error", %{"why" => "testing"})
IO.puts("error reply: #{inspect(err)}")

# a broadcast from another socket reaches this one
{:ok, other} = WsPort.Phoenix.connect(url, opts)
{:ok, _} = WsPort.Phoenix.join(other, "room:lobby")
{:ok, _} = WsPort.Phoenix.push(other, "room:lobby", "shout", %{"from" => "other socket"})
{:ok, shout} = WsPort.Phoenix.await_message(socket, "room:lobby", "shout", 5000)
IO.puts("broadcast seen: #{inspect(shout)}")
:ok = WsPort.Phoenix.disconnect(other)

# the channel refuses this join
{:error, refused} = WsPort.Phoenix.join(socket, "room:forbidden")
IO.puts("refused: #{inspect(refused)}")

# the channel crashes (phx_error): the socket rejoins by itself (1 s later);
# this push waits for the rejoin
{:error, {:topic_closed, :crashed}} = WsPort.Phoenix.push(socket, "room:lobby", "crash", %{})
{:ok, _} = WsPort.Phoenix.push(socket, "room:lobby", "echo", %{"after" => "crash"})
IO.puts("rejoined after a channel crash")

# the server drops the socket: it reconnects and rejoins by itself
{:error, :disconnected} = WsPort.Phoenix.push(socket, "room:lobby", "drop_socket", %{})
{:ok, _} = WsPort.Phoenix.push(socket, "room:lobby", "echo", %{"after" => "drop"})
IO.puts("reconnected and rejoined: #{inspect(WsPort.Phoenix.info(socket).stats)}")

:ok = WsPort.Phoenix.leave(socket, "room:lobby")
:ok = WsPort.Phoenix.disconnect(socket)
IO.puts("done")
