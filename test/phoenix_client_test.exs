Code.require_file("support/peer.exs", __DIR__)
Code.require_file("support/phoenix_clients.exs", __DIR__)

defmodule WsPort.PhoenixClientTest do
  @moduledoc """
  WsPort.Phoenix.Client / :ws_port_phoenix_client end to end through the
  real port program against test/peers/phoenix_server.py: callbacks,
  joins from init and at run time, replies by ref, broadcasts, rejoin
  after phx_error and after a dropped socket with no code of the module,
  credit under a slow handle_message, and supervision.
  """
  use ExUnit.Case, async: false

  @moduletag :capture_log

  alias WsPort.Phoenix.Client
  alias WsPort.Test.{Peer, PhoenixReportClient}

  setup do
    peer = Peer.start!(:phoenix)
    on_exit(fn -> Peer.stop(peer) end)
    {:ok, peer: peer, url: "ws://127.0.0.1:#{Peer.port(peer)}/socket/websocket"}
  end

  defp start_client(url, arg, opts \\ []) do
    opts =
      Keyword.merge(
        [
          url: url,
          params: %{token: "good"},
          rejoin_after: fn _ -> 50 end,
          init_arg: [test: self()] ++ arg
        ],
        opts
      )

    {:ok, pid} = Client.start(PhoenixReportClient, opts)
    on_exit(fn -> stop_quietly(fn -> Client.stop(pid) end) end)
    pid
  end

  # the process may be gone already (linked to the finished test)
  defp stop_quietly(fun) do
    fun.()
  catch
    :exit, _ -> :ok
  end

  defp push(pid, topic, event, payload) do
    GenServer.cast(pid, {:push, topic, event, payload})
    assert_receive {:phx, :pushed, {:ok, ref}}, 5000
    ref
  end

  test "joins from init, replies by ref, messages and broadcasts", %{url: url} do
    pid = start_client(url, joins: [{"room:a", %{"x" => 1}}])
    assert_receive {:phx, :connect, nil}, 5000
    assert_receive {:phx, :join, {"room:a", {:ok, %{"params" => %{"x" => 1}}}}}, 5000

    ref = push(pid, "room:a", "echo", %{"hello" => nil})
    assert_receive {:phx, :reply, {^ref, {:ok, %{"hello" => nil}}}}, 5000
    ref = push(pid, "room:a", "error", %{"no" => true})
    assert_receive {:phx, :reply, {^ref, {:error, %{"no" => true}}}}, 5000

    {:ok, other} = WsPort.Phoenix.connect(url, params: %{token: "good"})
    {:ok, _} = WsPort.Phoenix.join(other, "room:a")
    {:ok, _} = WsPort.Phoenix.push(other, "room:a", "shout", %{"from" => "other"})
    assert_receive {:phx, :message, {"room:a", "shout", %{"from" => "other"}}}, 5000
    :ok = WsPort.Phoenix.disconnect(other)

    GenServer.cast(pid, {:push, "room:zz", "echo", %{}})
    assert_receive {:phx, :pushed, {:error, {:not_joined, "room:zz"}}}
    GenServer.cast(pid, {:join, "room:a", %{}})
    assert_receive {:phx, :join_called, {:error, {:already_joined, "room:a"}}}
    assert %{test: _} = Client.call(pid, :state)
  end

  test "a refused join is reported to handle_join and not retried", %{url: url, peer: peer} do
    _pid = start_client(url, joins: [{"room:forbidden", %{}}])

    assert_receive {:phx, :join, {"room:forbidden", {:error, %{"reason" => "unauthorized"}}}},
                   5000

    Peer.await_line(peer, "REFUSE ")
    Process.sleep(200)
    assert length(Enum.filter(Peer.lines(peer), &(&1 =~ ~r/^REFUSE /))) == 1
  end

  test "rejoin after phx_error and after a dropped socket, topics joined at run time included",
       %{url: url, peer: peer} do
    pid = start_client(url, joins: [{"room:a", %{"n" => 1}}])
    assert_receive {:phx, :join, {"room:a", {:ok, _}}}, 5000
    GenServer.cast(pid, {:join, "room:late", %{"n" => 2}})
    assert_receive {:phx, :join, {"room:late", {:ok, _}}}, 5000

    ref = push(pid, "room:a", "crash", %{})
    assert_receive {:phx, :reply, {^ref, {:error, {:topic_closed, :crashed}}}}, 5000
    assert_receive {:phx, :topic_close, {"room:a", :crashed}}
    assert_receive {:phx, :join, {"room:a", {:ok, %{"params" => %{"n" => 1}}}}}, 5000

    assert "OK 1" = Peer.control(peer, "drop_all")
    assert_receive {:phx, :disconnect, _reason}, 5000
    assert_receive {:phx, :connect, nil}, 5000
    assert_receive {:phx, :join, {"room:a", {:ok, _}}}, 5000
    assert_receive {:phx, :join, {"room:late", {:ok, %{"params" => %{"n" => 2}}}}}, 5000
    assert length(Peer.await_count(peer, ~r/^JOIN \S+ room:late /, 2)) == 2
    assert %{topics: %{"room:a" => :joined, "room:late" => :joined}} = Client.info(pid)
  end

  test "a join without an answer is reported and tried again, as phoenix.js does",
       %{url: url, peer: peer} do
    _pid = start_client(url, [joins: [{"room:s", %{"silent" => true}}]], join_timeout: 100)
    assert_receive {:phx, :join, {"room:s", {:error, :timeout}}}, 5000
    assert_receive {:phx, :join, {"room:s", {:error, :timeout}}}, 5000
    assert length(Peer.await_count(peer, ~r/^SILENT \S+ room:s/, 2)) >= 2
  end

  test "leave, and a channel the server closes", %{url: url, peer: peer} do
    pid = start_client(url, joins: [{"room:a", %{}}, {"room:b", %{}}])
    assert_receive {:phx, :join, {"room:a", {:ok, _}}}, 5000
    assert_receive {:phx, :join, {"room:b", {:ok, _}}}, 5000

    GenServer.cast(pid, {:leave, "room:a"})
    assert_receive {:phx, :leave_called, :ok}
    assert_receive {:phx, :leave, "room:a"}, 5000
    assert Peer.await_line(peer, "LEAVE ") =~ "room:a"

    ref = push(pid, "room:b", "leave_me", %{})
    assert_receive {:phx, :reply, {^ref, {:ok, %{}}}}, 5000
    assert_receive {:phx, :topic_close, {"room:b", :closed}}, 5000
    assert %{topics: topics} = Client.info(pid)
    assert topics == %{}
  end

  test "a slow handle_message holds the server back (credit)", %{url: url} do
    window = 10
    pid = start_client(url, [joins: [{"room:flood", %{}}], sleep: 2], window: window)
    assert_receive {:phx, :join, {"room:flood", {:ok, _}}}, 5000
    ref = push(pid, "room:flood", "count", %{n: 300})

    max_queue =
      Enum.reduce_while(Stream.repeatedly(fn -> :ok end), 0, fn _, max ->
        {:message_queue_len, len} = Process.info(pid, :message_queue_len)

        receive do
          {:phx, :reply, {^ref, {:ok, _}}} -> {:halt, max(max, len)}
        after
          1 -> {:cont, max(max, len)}
        end
      end)

    for i <- 1..300,
        do: assert_receive({:phx, :message, {"room:flood", "item", %{"i" => ^i}}}, 5000)

    # frames delivered and not handled never exceed the window (plus the
    # passive notice and a cast or two)
    assert max_queue <= window + 3
  end

  test "runs under WsPort.ClientSupervisor and in a user's tree", %{url: url} do
    {:ok, sup} = WsPort.ClientSupervisor.start_link(name: false)
    on_exit(fn -> stop_quietly(fn -> Supervisor.stop(sup) end) end)

    {:ok, pid} =
      :ws_port_client_sup.start_client(sup, url,
        module: PhoenixReportClient,
        params: %{token: "good"},
        init_arg: [test: self(), joins: [{"room:sup", %{}}]]
      )

    assert_receive {:phx, :join, {"room:sup", {:ok, _}}}, 5000
    assert [^pid] = WsPort.ClientSupervisor.list_clients(sup)
    # send_balanced asks every client of the supervisor: a Phoenix client
    # is not a candidate for raw frames, and is not disturbed
    assert {:error, :no_connections} =
             WsPort.ClientSupervisor.send_balanced({:text, "x"}, supervisor: sup)

    assert Process.alive?(pid)
    # a crash is restarted: the new process joins again
    Process.exit(pid, :kill)
    assert_receive {:phx, :join, {"room:sup", {:ok, _}}}, 5000
    assert [new] = WsPort.ClientSupervisor.list_clients(sup)
    assert new != pid

    children = [
      {PhoenixReportClient,
       url: url, params: %{token: "good"}, init_arg: [test: self(), joins: [{"room:tree", %{}}]]}
    ]

    {:ok, tree} = Supervisor.start_link(children, strategy: :one_for_one)
    assert_receive {:phx, :join, {"room:tree", {:ok, _}}}, 5000
    Supervisor.stop(tree)
  end

  test "a refused upgrade ends the client with {:closed, reason}", %{url: url} do
    Process.flag(:trap_exit, true)

    {:ok, pid} =
      Client.start_link(PhoenixReportClient,
        url: url,
        params: %{token: "bad"},
        init_arg: [test: self()]
      )

    assert_receive {:phx, :disconnect, {:http_status, 403, _}}, 5000
    assert_receive {:EXIT, ^pid, {:closed, {:http_status, 403, _}}}, 5000
  end

  test "bad options, URL, module and name are errors of start_link, not exit signals",
       %{url: url} do
    # they were init/1's {:stop, reason}: start_link returned the error and
    # the exit signal that followed through the link ended the caller
    Process.flag(:trap_exit, true)
    opts = [url: url, init_arg: [test: self()]]

    assert {:error, {:bad_option, :fooo, 1}} =
             Client.start_link(PhoenixReportClient, opts ++ [fooo: 1])

    assert {:error, {:bad_option, :heartbeat_interval, 0}} =
             Client.start_link(PhoenixReportClient, opts ++ [heartbeat_interval: 0])

    assert {:error, {:bad_option, :json, NoSuchCodec}} =
             Client.start_link(PhoenixReportClient, opts ++ [json: NoSuchCodec])

    assert {:error, {:bad_option, {:retry, :delay}, -1}} =
             Client.start_link(PhoenixReportClient, opts ++ [retry: [delay: -1]])

    assert {:error, {:bad_option, :params, 5}} =
             Client.start_link(PhoenixReportClient, opts ++ [params: 5])

    assert {:error, {:invalid_url, "scheme must be ws:// or wss://"}} =
             Client.start_link(PhoenixReportClient, url: "http://127.0.0.1:1/socket/websocket")

    assert {:error, {:bad_module, NoSuchPhoenixClient, :nofile}} =
             Client.start_link(NoSuchPhoenixClient, opts)

    # a FunctionClauseError in :gen.where/1
    assert {:error, {:bad_option, :name, "lobby"}} =
             Client.start_link(PhoenixReportClient, opts ++ [name: "lobby"])

    # a FunctionClauseError in to_map/1
    assert {:error, {:bad_option, :opts, :fast}} =
             :ws_port_phoenix_client.start_link(PhoenixReportClient, url, :fast)

    # without :url: a KeyError raised in the caller (Keyword.pop!/2)
    assert {:error, {:bad_option, :url, :undefined}} =
             Client.start_link(PhoenixReportClient, init_arg: [test: self()])

    assert {:error, {:bad_option, :url, :undefined}} =
             Client.start(PhoenixReportClient, init_arg: [test: self()])

    assert {:error, {:bad_option, :url, :undefined}} =
             PhoenixReportClient.start_link(init_arg: [test: self()])

    refute_receive {:EXIT, _, _}, 200
  end

  test "the URL may be a %URI{}", %{url: url, peer: peer} do
    pid = start_client(URI.parse(url), joins: [{"room:uri", %{}}])
    assert_receive {:phx, :join, {"room:uri", {:ok, _}}}, 5000
    # the params and vsn went into the query of the URL made from it
    assert Peer.await_line(peer, "CONNECT ") =~ "token=good"
    ref = push(pid, "room:uri", "echo", %{"via" => "uri"})
    assert_receive {:phx, :reply, {^ref, {:ok, %{"via" => "uri"}}}}, 5000
  end

  test "stop of a client that has ended already is :ok, as WsPort.Client.close/1's",
       %{url: url} do
    {:ok, pid} = Client.start(PhoenixReportClient, url: url, init_arg: [test: self()])
    assert :ok = Client.stop(pid)
    # it exited with :noproc (gen_server:stop/1 of an ended process)
    assert :ok = Client.stop(pid)
    assert :ok = :ws_port_phoenix_client.stop(pid)
  end

  test "child_spec/1 takes a proplist as ws_port_client's does; without module and url it says so",
       %{url: url} do
    # a proplist was a FunctionClauseError (a map only)
    spec =
      :ws_port_phoenix_client.child_spec(
        module: PhoenixReportClient,
        url: url,
        id: :lobby,
        params: %{token: "good"},
        init_arg: [test: self(), joins: [{"room:spec", %{}}]]
      )

    assert %{id: :lobby, restart: :transient} = spec
    {:ok, tree} = Supervisor.start_link([spec], strategy: :one_for_one)
    assert_receive {:phx, :join, {"room:spec", {:ok, _}}}, 5000
    Supervisor.stop(tree)

    error = assert_raise ArgumentError, fn -> :ws_port_phoenix_client.child_spec(%{url: url}) end
    assert Exception.message(error) =~ "1st argument: a map or proplist with module and url"

    # ws_port_client's: a FunctionClauseError; now its start says what is wrong
    assert %{start: {:ws_port_client, :start_link, [:fast]}} = :ws_port_client.child_spec(:fast)
    assert {:error, {:bad_option, :opts, :fast}} = :ws_port_client.start_link(:fast)
  end
end
