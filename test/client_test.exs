Code.require_file("support/jsonrpc_peer.exs", __DIR__)
Code.require_file("support/test_clients.exs", __DIR__)

defmodule WsPort.ClientTest do
  @moduledoc """
  WsPort.Client / :ws_port_client against test/peers/jsonrpc_server.py on
  127.0.0.1: callbacks, replies, re-subscription after a server restart,
  credit under a fast server and a slow handler, Deribit-style and
  missed heartbeats, health, and the synchronous interface.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.JsonRpcPeer, as: Peer
  alias WsPort.Test.ReportClient

  @fast_retry %{delay: 100, max_delay: 300, jitter: 0.0}

  setup do
    peer = Peer.start!()
    on_exit(fn -> Peer.stop(peer) end)
    {:ok, peer: peer}
  end

  defp start_client(url, opts) do
    {init, opts} = Keyword.pop(opts, :init, [])
    opts = Keyword.merge([init_arg: [test: self()] ++ init, retry: @fast_retry], opts)
    {:ok, pid} = WsPort.Client.start(ReportClient, url, opts)
    on_exit(fn -> WsPort.Client.close(pid) end)
    pid
  end

  test "callbacks, replies from callbacks, send_frame, call and cast", %{peer: peer} do
    url = Peer.url(peer, "/echo?tag=basic")
    pid = start_client(url, init: [subscribe: ~s({"subscribe":"basic"})])

    assert_receive {:client, :connect, ^pid, info}, 5000
    assert info.status == 101 and info.reconnects == 0 and info.url == url
    # the reply of handle_connect went out and came back
    assert_receive {:client, :frame, ^pid, {:text, ~s({"subscribe":"basic"})}}, 5000

    assert :ok = WsPort.Client.send_frame(pid, {:binary, <<1, 2, 3>>})
    assert_receive {:client, :frame, ^pid, {:binary, <<1, 2, 3>>}}, 5000
    assert :ok = WsPort.Client.send_frame(pid, "bare binary is text")
    assert_receive {:client, :frame, ^pid, {:text, "bare binary is text"}}, 5000
    assert :ok = WsPort.Client.send_frame(pid, [{:text, "one"}, {:text, "two"}])
    assert_receive {:client, :frame, ^pid, {:text, "one"}}, 5000
    assert_receive {:client, :frame, ^pid, {:text, "two"}}, 5000
    assert {:error, {:bad_frame, :nope}} = WsPort.Client.send_frame(pid, :nope)
    # a list with a bad frame sends none of it (the frames before it went out)
    assert {:error, {:bad_frame, 42}} = WsPort.Client.send_frame(pid, [{:text, "not sent"}, 42])
    assert :ok = WsPort.Client.send_frame(pid, {:text, "next"})
    assert_receive {:client, :frame, ^pid, frame}, 5000
    assert frame == {:text, "next"}

    assert :sent = WsPort.Client.call(pid, {:send, "from handle_call"})
    assert_receive {:client, :frame, ^pid, {:text, "from handle_call"}}, 5000
    :ok = WsPort.Client.cast(pid, {:send, "from handle_cast"})
    assert_receive {:client, :frame, ^pid, {:text, "from handle_cast"}}, 5000
    assert WsPort.Client.call(pid, :frames) == 8

    # a deferred reply
    task = Task.async(fn -> WsPort.Client.call(pid, :later) end)
    Process.sleep(50)
    send(pid, {:answer_later, :done})
    assert Task.await(task) == :done

    assert {:ok, conn} = WsPort.Client.connection(pid)
    assert {:ok, %{state: _}} = WsPort.info(conn)

    health = WsPort.Client.health(pid)
    assert health.connected and health.status == :connected
    # the two bad sends above
    assert health.errors == 2 and health.last_error == {:error, {:bad_frame, 42}}
    assert health.heartbeat == :ping_pong and health.reconnects == 0

    ref = Process.monitor(pid)
    assert :ok = WsPort.Client.close(pid)
    assert_receive {:client, :terminate, ^pid, :normal}, 5000
    assert_receive {:DOWN, ^ref, :process, ^pid, :normal}, 5000
    Peer.await_line(peer, "CLOSED /echo?tag=basic 1000")
    assert :ok = WsPort.Client.close(pid)
    assert {:error, :noproc} = WsPort.Client.send_frame(pid, "x")
  end

  test "subscribes again after the server restarts", %{peer: peer} do
    port = Peer.port(peer)
    url = Peer.url(peer, "/echo?tag=resub")
    pid = start_client(url, init: [subscribe: ~s({"subscribe":"trades"})])

    assert_receive {:client, :connect, ^pid, %{reconnects: 0}}, 5000
    Peer.await_line(peer, ~s(RECV /echo?tag=resub {"subscribe":"trades"}))

    Peer.stop(peer)
    assert_receive {:client, :disconnect, ^pid, info}, 5000
    assert info.final == false and info.attempt >= 1
    refute WsPort.Client.health(pid).connected

    peer2 = Peer.start!(port: port)
    on_exit(fn -> Peer.stop(peer2) end)

    assert_receive {:client, :connect, ^pid, %{reconnects: 1}}, 10_000
    Peer.await_line(peer2, ~s(RECV /echo?tag=resub {"subscribe":"trades"}))

    health = WsPort.Client.health(pid)
    assert health.connected and health.reconnects == 1 and health.disconnects == 1
  end

  test "credit keeps the mailbox small with a fast server and a slow handler", %{peer: peer} do
    pid =
      start_client(Peer.url(peer, "/flood?n=20000&size=4000&tag=credit"),
        window: 20,
        init: [sleep: 2, report_frames: false]
      )

    assert_receive {:client, :connect, ^pid, _}, 5000

    lengths =
      for _ <- 1..60 do
        Process.sleep(10)
        {:message_queue_len, n} = Process.info(pid, :message_queue_len)
        n
      end

    handled = WsPort.Client.call(pid, :frames)
    assert handled > 50, "the client handled only #{handled} frames"
    # 20 frames of credit plus a few control messages at most
    assert Enum.max(lengths) <= 25, "mailbox lengths: #{inspect(lengths)}"
    # the server is held back: it cannot have sent everything yet
    refute Enum.any?(Peer.lines(peer), &String.starts_with?(&1, "SENT /flood"))
  end

  test "without a window the mailbox fills (what credit prevents)", %{peer: peer} do
    pid =
      start_client(Peer.url(peer, "/flood?n=3000&size=200&tag=nocredit"),
        window: :infinity,
        init: [sleep: 2, report_frames: false, report_handled: true]
      )

    assert_receive {:client, :connect, ^pid, _}, 5000
    Peer.await_line(peer, "SENT /flood?n=3000&size=200&tag=nocredit")
    Process.sleep(100)
    {:message_queue_len, n} = Process.info(pid, :message_queue_len)
    assert n > 1000

    # close/1 does not wait for that backlog to go through handle_frame (2 ms
    # each: more than its 10 s call timeout on a loaded machine): the frames
    # not yet handled are dropped, the connection closes with 1000
    assert :ok = WsPort.Client.close(pid)
    assert_receive {:client, :handled, ^pid, handled}, 5000
    assert handled < 3000
    assert_receive {:client, :terminate, ^pid, :normal}, 5000
    Peer.await_line(peer, "CLOSED /flood?n=3000&size=200&tag=nocredit 1000")
  end

  test "Deribit heartbeat: answers test requests, measures the RTT, hides heartbeats", %{
    peer: peer
  } do
    pid =
      start_client(Peer.url(peer, "/rpc?tag=deribit"),
        heartbeat: %{type: :deribit, interval: 200},
        init: [
          subscribe:
            ~s({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["trades.BTC"]}})
        ]
      )

    assert_receive {:client, :connect, ^pid, _}, 5000

    Peer.await_line(
      peer,
      ~s(RECV /rpc?tag=deribit {"jsonrpc":"2.0","id":7000000000000,"method":"public/set_heartbeat","params":{"interval":0.2}})
    )

    Peer.await_line(peer, "SUBSCRIBE /rpc?tag=deribit trades.BTC")
    Peer.await_line(peer, "TEST /rpc?tag=deribit", 3)

    # the client sees its own traffic, never a heartbeat or a public/test answer
    assert_receive {:client, :frame, ^pid, {:text, subscribed}}, 5000
    assert subscribed =~ ~s("result": ["trades.BTC"])
    Process.sleep(300)
    refute_received {:client, :frame, ^pid, _}

    health = WsPort.Client.health(pid)
    assert health.heartbeat == :ws_port_heartbeat_deribit
    assert health.connected and health.misses == 0 and health.max_misses == 2
    assert is_integer(health.last_rtt_us) and health.last_rtt_us > 0
    assert health.uptime_ms > 0 and health.age_ms >= health.uptime_ms
    refute Enum.any?(Peer.lines(peer), &String.starts_with?(&1, "MISSED"))
  end

  test "missed heartbeats drop the connection and reconnect", %{peer: peer} do
    pid =
      start_client(Peer.url(peer, "/rpc?silent=1&tag=miss"),
        heartbeat: {:deribit, %{interval: 100, max_misses: 2}},
        init: [
          subscribe:
            ~s({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["a"]}})
        ]
      )

    assert_receive {:client, :connect, ^pid, %{reconnects: 0}}, 5000
    assert_receive {:client, :disconnect, ^pid, info}, 5000
    assert info.reason == {:heartbeat_timeout, 2} and info.final == false

    assert_receive {:client, :connect, ^pid, %{reconnects: 1}}, 5000
    Peer.await_line(peer, "SUBSCRIBE /rpc?silent=1&tag=miss a", 2)
    Peer.await_line(peer, "CLOSED /rpc?silent=1&tag=miss 1000")

    health = WsPort.Client.health(pid)
    assert health.reconnects >= 1 and health.total_misses >= 2 and health.disconnects >= 1
  end

  test "an application heartbeat module of one's own", %{peer: peer} do
    defmodule EchoBeat do
      @behaviour :ws_port_heartbeat
      def init(opts), do: {:ok, Map.get(opts, :interval, 100), 3, nil}
      def connected(s), do: {[{:text, "hello-beat"}], s}
      def tick(_s), do: {[{:text, "beat"}], System.monotonic_time(:microsecond)}

      def handle_frame({:text, "beat"}, sent),
        do: {:alive, System.monotonic_time(:microsecond) - sent, [], sent}

      def handle_frame({:text, "hello-beat"}, s), do: {:consumed, [], s}
      def handle_frame(_, _), do: :pass
    end

    pid =
      start_client(Peer.url(peer, "/echo?tag=ownbeat"), heartbeat: {EchoBeat, %{interval: 50}})

    assert_receive {:client, :connect, ^pid, _}, 5000
    Peer.await_line(peer, "RECV /echo?tag=ownbeat beat", 3)
    :ok = WsPort.Client.send_frame(pid, "data")
    assert_receive {:client, :frame, ^pid, {:text, "data"}}, 5000
    refute_received {:client, :frame, ^pid, {:text, "beat"}}
    health = WsPort.Client.health(pid)
    assert health.heartbeat == EchoBeat and is_integer(health.last_rtt_us) and health.misses == 0
  end

  test "ping_pong heartbeat: the port program's pings give the RTT", %{peer: peer} do
    pid = start_client(Peer.url(peer, "/echo?tag=ping"), ping_interval: 50)
    assert_receive {:client, :connect, ^pid, _}, 5000
    Process.sleep(300)
    health = WsPort.Client.health(pid)
    assert health.heartbeat == :ping_pong and is_integer(health.last_rtt_us)
  end

  @tag capture_log: true
  test "a final close ends the client with {:closed, reason}" do
    {:ok, listener} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(listener)
    :ok = :gen_tcp.close(listener)

    {:ok, pid} =
      WsPort.Client.start(ReportClient, "ws://127.0.0.1:#{port}/",
        init_arg: [test: self()],
        retry: false
      )

    ref = Process.monitor(pid)
    assert_receive {:client, :disconnect, ^pid, %{final: true, reason: :econnrefused}}, 5000
    assert_receive {:DOWN, ^ref, :process, ^pid, {:closed, :econnrefused}}, 5000
  end

  test "handle_disconnect can stop the client", %{peer: peer} do
    pid = start_client(Peer.url(peer, "/echo?tag=stop"), init: [on_disconnect: :stop])
    ref = Process.monitor(pid)
    assert_receive {:client, :connect, ^pid, _}, 5000
    Peer.stop(peer)
    assert_receive {:DOWN, ^ref, :process, ^pid, :normal}, 5000
  end

  test "bad options are refused at start" do
    assert {:error, {:bad_option, :window, 0}} =
             WsPort.Client.start(ReportClient, "ws://127.0.0.1:1/", window: 0)

    assert {:error, {:bad_option, :active, true}} =
             WsPort.Client.start(ReportClient, "ws://127.0.0.1:1/", active: true)

    assert {:error, {:bad_option, :heartbeat, :no_such_module}} =
             WsPort.Client.start(ReportClient, "ws://127.0.0.1:1/", heartbeat: :no_such_module)
  end

  test "a bad URL, module or name is an error of start_link, not an exit signal to its caller" do
    # init/1 returned {:stop, reason}: start_link returned {:error, reason}
    # and the exit signal that followed through the link ended the caller
    Process.flag(:trap_exit, true)
    url = "ws://127.0.0.1:1/"

    assert {:error, {:invalid_url, "scheme must be ws:// or wss://"}} =
             WsPort.Client.start_link(ReportClient, "http://127.0.0.1:1/", [])

    assert {:error, {:invalid_url, "not a string"}} =
             WsPort.Client.start_link(ReportClient, 42, [])

    assert {:error, {:bad_module, NoSuchClient, :nofile}} =
             WsPort.Client.start_link(NoSuchClient, url, [])

    # handle_frame/2 is the one callback without a default: it was an undef
    # crash at the first frame
    assert {:error, {:bad_module, Enum, {:not_exported, {:handle_frame, 2}}}} =
             WsPort.Client.start_link(Enum, url, [])

    # a FunctionClauseError in :gen.where/1
    assert {:error, {:bad_option, :name, "client"}} =
             WsPort.Client.start_link(ReportClient, url, name: "client")

    assert {:error, {:bad_option, :name, {:local, "client"}}} =
             :ws_port_client.start(ReportClient, url, %{name: {:local, "client"}})

    # the Deribit heartbeat's own options: checked in init/1 only, an exit
    # signal too, and named without saying they were the heartbeat's
    assert {:error, {:bad_option, {:heartbeat, :interval}, -5}} =
             WsPort.Client.start_link(ReportClient, url,
               heartbeat: %{type: :deribit, interval: -5}
             )

    assert {:error, {:bad_option, {:heartbeat, :max_misses}, :x}} =
             WsPort.Client.start_link(ReportClient, url, heartbeat: {:deribit, %{max_misses: :x}})

    refute_receive {:EXIT, _, _}, 200
  end

  test "use WsPort.Client gives a transient child_spec and a start_link/1", %{peer: peer} do
    spec = ReportClient.child_spec(url: "ws://x/", id: :abc)
    assert spec.restart == :transient and spec.id == :abc

    {:ok, sup} =
      Supervisor.start_link(
        [
          {ReportClient,
           url: Peer.url(peer, "/echo?tag=tree"), init_arg: [test: self()], retry: @fast_retry}
        ],
        strategy: :one_for_one
      )

    assert_receive {:client, :connect, pid, _}, 5000
    assert [{ReportClient, ^pid, :worker, _}] = Supervisor.which_children(sup)
    Supervisor.stop(sup)
  end

  test "WsPort.Client.child_spec/1 puts a client given as options in a tree", %{peer: peer} do
    children = [
      {WsPort.Client,
       url: Peer.url(peer, "/echo?tag=spec"),
       id: :exchange1_client,
       module: ReportClient,
       init_arg: [test: self()],
       heartbeat: :none}
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    assert_receive {:client, :connect, pid, _}, 5000
    assert [{:exchange1_client, ^pid, :worker, _}] = Supervisor.which_children(sup)
    assert WsPort.Client.health(pid).heartbeat == :none
    # a normal close is not restarted (transient)
    :ok = WsPort.Client.close(pid)
    Process.sleep(200)
    assert [{:exchange1_client, :undefined, :worker, _}] = Supervisor.which_children(sup)
    Supervisor.stop(sup)
  end

  test "synchronous interface: connect, send, receive_frame", %{peer: peer} do
    {:ok, conn} = WsPort.Sync.connect(Peer.url(peer, "/echo?tag=sync"))
    :ok = WsPort.Sync.send(conn, "one")
    :ok = WsPort.Sync.send(conn, {:binary, <<0, 1>>})
    assert {:ok, {:text, "one"}} = WsPort.Sync.receive_frame(conn, 5000)
    assert {:ok, {:binary, <<0, 1>>}} = WsPort.Sync.receive_frame(conn, 5000)
    assert {:error, :timeout} = WsPort.Sync.receive_frame(conn, 100)
    :ok = WsPort.Sync.send(conn, "after a timeout")
    assert {:ok, {:text, "after a timeout"}} = WsPort.Sync.receive_frame(conn, 5000)
    # passive: nothing is pushed into the mailbox between calls
    :ok = WsPort.Sync.send(conn, "waits in the port")
    Process.sleep(200)
    assert {:messages, []} = Process.info(self(), :messages)
    assert {:ok, {:text, "waits in the port"}} = WsPort.Sync.receive_frame(conn)
    :ok = WsPort.Sync.close(conn)
    assert {:error, {:closed, _}} = WsPort.Sync.receive_frame(conn, 100)

    {:ok, conn} = WsPort.Sync.connect(Peer.url(peer, "/nowhere"))
    assert {:error, {:closed, {:remote, 4404, _}}} = WsPort.Sync.receive_frame(conn, 5000)
  end

  test "synchronous interface: :active and :await are refused, as WsPort.Client refuses them",
       %{peer: peer} do
    url = Peer.url(peer, "/echo?tag=sync_opts")
    # they were silently replaced (active: false, await: true)
    assert {:error, {:bad_option, :active, true}} = WsPort.Sync.connect(url, active: true)
    assert {:error, {:bad_option, :await, false}} = :ws_port_sync.connect(url, %{await: false})
    assert {:ok, conn} = WsPort.Sync.connect(url, retry: false)
    :ok = WsPort.Sync.close(conn)
  end
end
