Code.require_file("support/jsonrpc_peer.exs", __DIR__)
Code.require_file("support/test_clients.exs", __DIR__)

defmodule WsPort.ClientSupervisorTest do
  @moduledoc """
  WsPort.ClientSupervisor / :ws_port_client_sup against
  test/peers/jsonrpc_server.py on 127.0.0.1: start/stop/list, restarts of a
  crashing client and the restart limit, lifecycle hooks with :pg, and
  send_balanced.
  """
  use ExUnit.Case, async: false

  defp quietly(fun) do
    fun.()
  catch
    :exit, _ -> :ok
  end

  alias WsPort.ClientSupervisor, as: CS
  alias WsPort.Test.JsonRpcPeer, as: Peer
  alias WsPort.Test.ReportClient

  @fast_retry %{delay: 100, max_delay: 300, jitter: 0.0}

  setup do
    peer = Peer.start!()
    on_exit(fn -> Peer.stop(peer) end)
    {:ok, peer: peer}
  end

  defp start_sup(opts \\ []) do
    {:ok, sup} = CS.start_link(Keyword.merge([name: false], opts))
    Process.unlink(sup)
    on_exit(fn -> if Process.alive?(sup), do: Process.exit(sup, :shutdown) end)
    sup
  end

  defp client_opts(sup, extra \\ []) do
    Keyword.merge(
      [
        supervisor: sup,
        module: ReportClient,
        init_arg: [test: self()] ++ Keyword.get(extra, :init, []),
        retry: @fast_retry
      ],
      Keyword.delete(extra, :init)
    )
  end

  test "start_client, list_clients, stop_client (not restarted)", %{peer: peer} do
    sup = start_sup()
    {:ok, a} = CS.start_client(Peer.url(peer, "/echo?tag=a"), client_opts(sup))
    {:ok, b} = CS.start_client([url: Peer.url(peer, "/echo?tag=b")], client_opts(sup))
    assert_receive {:client, :connect, ^a, _}, 5000
    assert_receive {:client, :connect, ^b, _}, 5000
    assert Enum.sort(CS.list_clients(sup)) == Enum.sort([a, b])

    ref = Process.monitor(a)
    assert :ok = CS.stop_client(sup, a)
    assert_receive {:DOWN, ^ref, :process, ^a, :shutdown}, 5000
    assert_receive {:client, :terminate, ^a, :shutdown}, 5000
    Peer.await_line(peer, "CLOSED /echo?tag=a 1000")
    Process.sleep(200)
    assert CS.list_clients(sup) == [b]
    assert Peer.count(peer, "OPEN /echo?tag=a") == 1

    assert {:error, :not_found} = CS.stop_client(sup, a)
    assert {:error, :not_found} = CS.stop_client(sup, self())

    # a client that closes itself is not restarted either (transient)
    ref = Process.monitor(b)
    :ok = WsPort.Client.close(b)
    assert_receive {:DOWN, ^ref, :process, ^b, :normal}, 5000
    Process.sleep(200)
    assert CS.list_clients(sup) == []
  end

  test "stop_client does not wait for a backlog of frames to be handled", %{peer: peer} do
    sup = start_sup()
    path = "/flood?n=3000&size=200&tag=stopbacklog"

    {:ok, c} =
      CS.start_client(
        Peer.url(peer, path),
        client_opts(sup,
          window: :infinity,
          init: [sleep: 2, report_frames: false, report_handled: true]
        )
      )

    assert_receive {:client, :connect, ^c, _}, 5000
    Peer.await_line(peer, "SENT " <> path)
    Process.sleep(100)
    {:message_queue_len, n} = Process.info(c, :message_queue_len)
    assert n > 1000

    # handled one by one (2 ms each) the backlog would outlast the
    # supervisor's 5 s shutdown limit and the client would be killed, its
    # terminate/2 never run: the frames not yet handled are dropped instead
    ref = Process.monitor(c)
    assert :ok = CS.stop_client(sup, c)
    assert_receive {:DOWN, ^ref, :process, ^c, :shutdown}, 5000
    assert_receive {:client, :handled, ^c, handled}, 5000
    assert handled < 3000
    assert_receive {:client, :terminate, ^c, :shutdown}, 5000
    Peer.await_line(peer, "CLOSED #{path} 1000")
    assert CS.list_clients(sup) == []
    # the mark is gone with the client
    assert :ets.lookup(:ws_port_closing, c) == []
  end

  test "the default module forwards frames to the caller", %{peer: peer} do
    sup = start_sup()
    {:ok, c} = CS.start_client(%{url: Peer.url(peer, "/echo?tag=fwd")}, supervisor: sup)
    assert_receive {:ws_port_client_up, ^c, %{status: 101}}, 5000
    :ok = WsPort.Client.send_frame(c, "hi")
    assert_receive {:ws_port_client, ^c, {:text, "hi"}}, 5000
    # callbacks the module does not define
    assert {:error, {:unknown_call, :what}} = WsPort.Client.call(c, :what)
    :ok = WsPort.Client.cast(c, :ignored)
    send(c, :ignored)
    assert WsPort.Client.health(c).connected
    ref = Process.monitor(c)
    :ok = CS.stop_client(sup, c)
    assert_receive {:DOWN, ^ref, :process, ^c, :shutdown}, 5000
  end

  @tag capture_log: true
  test "a crashing client is restarted and subscribes again; the restart limit holds", %{
    peer: peer
  } do
    sup = start_sup(max_restarts: 2, max_seconds: 30)
    sup_ref = Process.monitor(sup)

    {:ok, c1} =
      CS.start_client(
        Peer.url(peer, "/echo?tag=crash"),
        client_opts(sup, init: [subscribe: "sub"])
      )

    assert_receive {:client, :connect, ^c1, _}, 5000
    Peer.await_line(peer, "RECV /echo?tag=crash sub", 1)

    # 1st crash: restarted, connects and subscribes again
    :ok = WsPort.Client.send_frame(c1, "crash")
    assert_receive {:client, :connect, c2, _}, 5000
    assert c2 != c1 and CS.list_clients(sup) == [c2]
    Peer.await_line(peer, "RECV /echo?tag=crash sub", 2)
    Peer.await_line(peer, "OPEN /echo?tag=crash", 2)

    # 2nd crash: restarted again
    :ok = WsPort.Client.send_frame(c2, "crash")
    assert_receive {:client, :connect, c3, _}, 5000
    assert c3 not in [c1, c2]

    # 3rd crash in 30 s: more than max_restarts, the supervisor gives up
    :ok = WsPort.Client.send_frame(c3, "crash")
    assert_receive {:DOWN, ^sup_ref, :process, ^sup, :shutdown}, 5000
  end

  test "on_connect / on_disconnect hooks keep a :pg group of connected clients", %{peer: peer} do
    scope = :ws_port_hooks_test
    {:ok, scope_pid} = :pg.start(scope)
    on_exit(fn -> quietly(fn -> GenServer.stop(scope_pid) end) end)
    sup = start_sup()

    hooks = [
      on_connect: fn pid -> :pg.join(scope, :pool, pid) end,
      on_disconnect: {:pg, :leave, [:ws_port_hooks_test, :pool]}
    ]

    port = Peer.port(peer)
    {:ok, c} = CS.start_client(Peer.url(peer, "/echo?tag=pg"), client_opts(sup, hooks))
    assert_receive {:client, :connect, ^c, _}, 5000
    assert :pg.get_members(scope, :pool) == [c]

    Peer.stop(peer)
    assert_receive {:client, :disconnect, ^c, _}, 5000
    assert :pg.get_members(scope, :pool) == []

    peer2 = Peer.start!(port: port)
    on_exit(fn -> Peer.stop(peer2) end)
    assert_receive {:client, :connect, ^c, _}, 10_000
    assert :pg.get_members(scope, :pool) == [c]

    :ok = CS.stop_client(sup, c)
    assert :pg.get_members(scope, :pool) == []
  end

  test "send_balanced picks a connected client, and none gives :no_connections", %{peer: peer} do
    sup = start_sup()
    # a client whose server does not exist: never connected
    {:ok, listener} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, dead_port} = :inet.port(listener)
    :ok = :gen_tcp.close(listener)
    {:ok, down} = CS.start_client("ws://127.0.0.1:#{dead_port}/", client_opts(sup))

    assert {:error, :no_connections} = CS.send_balanced({:text, "x"}, supervisor: sup)

    {:ok, up} = CS.start_client(Peer.url(peer, "/echo?tag=bal"), client_opts(sup))
    assert_receive {:client, :connect, ^up, _}, 5000

    for i <- 1..5 do
      assert :ok = CS.send_balanced({:text, "m#{i}"}, supervisor: sup)
      assert_receive {:client, :frame, ^up, {:text, "m" <> _}}, 5000
    end

    refute WsPort.Client.health(down).connected
    assert {:error, :no_connections} = CS.send_balanced("x", client_discovery: fn -> [down] end)
    assert {:error, :no_connections} = CS.send_balanced("x", client_discovery: fn -> [] end)
  end

  test "send_balanced ranks by health and fails over when a send fails", %{peer: peer} do
    sup = start_sup()
    {:ok, good} = CS.start_client(Peer.url(peer, "/echo?tag=fo"), client_opts(sup))
    assert_receive {:client, :connect, ^good, _}, 5000

    # a client that claims to be the healthiest but whose sends fail
    test = self()
    liar = spawn_link(fn -> liar_serve(test) end)
    dead = spawn(fn -> :ok end)

    discovery = fn -> [dead, liar, good] end
    assert :ok = CS.send_balanced({:text, "failover"}, client_discovery: discovery)
    assert_receive {:liar, :send_attempt}, 1000
    assert_receive {:client, :frame, ^good, {:text, "failover"}}, 5000

    # max_attempts: 1 stops after the liar
    assert {:error, :no_connections} =
             CS.send_balanced({:text, "x"}, client_discovery: discovery, max_attempts: 1)

    # rank/1 on its own
    healths = [
      {:a, %{connected: true, misses: 1, errors: 0, last_rtt_us: 10}},
      {:b, %{connected: true, misses: 0, errors: 2, last_rtt_us: 10}},
      {:c, %{connected: true, misses: 0, errors: 0, last_rtt_us: :undefined}},
      {:d, %{connected: true, misses: 0, errors: 0, last_rtt_us: 500}},
      {:e, %{connected: false, misses: 0, errors: 0, last_rtt_us: 1}}
    ]

    assert :ws_port_client_sup.rank(healths) == [:d, :c, :b, :a]
  end

  test "send_balanced: a frame no client may send is its error, not a failover", %{peer: peer} do
    sup = start_sup()

    clients =
      for tag <- ["a", "b", "c"] do
        {:ok, c} = CS.start_client(Peer.url(peer, "/echo?tag=frame_#{tag}"), client_opts(sup))
        assert_receive {:client, :connect, ^c, _}, 5000
        c
      end

    # each was tried on 3 clients in turn (each counting an error, which
    # ranks them lower for the next sends), then {:error, :no_connections}
    assert {:error, {:bad_frame, :nope}} = CS.send_balanced(:nope, supervisor: sup)
    assert {:error, {:invalid_utf8, 1}} = CS.send_balanced({:text, <<?a, 255>>}, supervisor: sup)

    assert {:error, {:too_large, 126, 125}} =
             CS.send_balanced({:ping, :binary.copy("p", 126)}, supervisor: sup)

    # the frame is checked before any client is asked
    assert {:error, {:bad_frame, :nope}} = CS.send_balanced(:nope, client_discovery: fn -> [] end)

    # one client tried (and counting the error) for each of the two, not three
    assert Enum.sum(for c <- clients, do: WsPort.Client.health(c).errors) == 2
    assert :ok = CS.send_balanced({:text, "fine"}, supervisor: sup)
    assert_receive {:client, :frame, _, {:text, "fine"}}, 5000
  end

  defp liar_serve(test) do
    receive do
      {:"$gen_call", from, {:"$ws_port_client", :health}} ->
        GenServer.reply(from, %{
          connected: true,
          misses: 0,
          errors: 0,
          last_rtt_us: 1,
          reconnects: 0
        })

      {:"$gen_call", from, {:"$ws_port_client", :send, _}} ->
        send(test, {:liar, :send_attempt})
        GenServer.reply(from, {:error, :not_connected})
    end

    liar_serve(test)
  end

  test "child_spec puts the supervisor in a tree; the default name works", %{peer: peer} do
    {:ok, top} = Supervisor.start_link([CS], strategy: :one_for_one)
    on_exit(fn -> if Process.alive?(top), do: Supervisor.stop(top) end)
    assert is_pid(Process.whereis(:ws_port_client_sup))

    {:ok, c} =
      CS.start_client(Peer.url(peer, "/echo?tag=default"),
        module: ReportClient,
        init_arg: [test: self()]
      )

    assert_receive {:client, :connect, ^c, _}, 5000
    assert CS.list_clients() == [c]
    assert :ok = CS.send_balanced("via default")
    assert_receive {:client, :frame, ^c, {:text, "via default"}}, 5000
    assert :ok = CS.stop_client(c)
    assert CS.list_clients() == []
    Supervisor.stop(top)
  end

  test "the supervisor's and send_balanced's option mistakes are {:error, {:bad_option, name, value}}" do
    Process.flag(:trap_exit, true)
    # a misspelled option was ignored (the supervisor ran with the default)
    assert {:error, {:bad_option, :max_restart, 3}} = CS.start_link(name: false, max_restart: 3)
    # supervisor:start_link/3's init failure, an exit signal to the caller
    assert {:error, {:bad_option, :max_restarts, -1}} =
             CS.start_link(name: false, max_restarts: -1)

    assert {:error, {:bad_option, :max_seconds, 0}} = CS.start_link(name: false, max_seconds: 0)
    assert {:error, {:bad_option, :name, "sup"}} = CS.start_link(name: "sup")

    assert {:error, {:bad_option, {:duplicate, :max_seconds}, 2}} =
             CS.start_link(name: false, max_seconds: 1, max_seconds: 2)

    # a FunctionClauseError in to_map/1
    assert {:error, {:bad_option, :opts, :fast}} = CS.start_link(:fast)
    assert {:error, {:bad_option, :opts, :fast}} = CS.send_balanced("x", :fast)
    assert {:error, {:bad_option, :max_attempt, 1}} = CS.send_balanced("x", max_attempt: 1)
    assert {:error, {:bad_option, :max_attempts, 0}} = CS.send_balanced("x", max_attempts: 0)
    assert {:error, {:bad_option, :timeout, :soon}} = CS.send_balanced("x", timeout: :soon)

    assert {:error, {:bad_option, :client_discovery, :pg}} =
             CS.send_balanced("x", client_discovery: :pg)

    # child_spec/1 of options that are not any: the supervisor's start says so
    assert %{start: {:ws_port_client_sup, :start_link, [:fast]}} = CS.child_spec(:fast)
    refute_receive {:EXIT, _, _}, 200
  end
end
