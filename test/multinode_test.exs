Code.require_file("support/jsonrpc_peer.exs", __DIR__)
Code.require_file("support/test_clients.exs", __DIR__)

defmodule WsPort.MultinodeTest do
  @moduledoc """
  Clients on two BEAM nodes (a second one started with OTP's `peer`) join a
  `:pg` group through their on_connect/on_disconnect hooks; send_balanced
  with `client_discovery: fn -> :pg.get_members(...) end` reaches a client
  on the other node, and fails over to this node's client when the other
  node's server goes away, and when the other node itself goes away.
  Everything on 127.0.0.1 (epmd is started with `epmd -daemon` if it is not
  running; it is left running for other distributed tests).
  """
  use ExUnit.Case, async: false

  defp quietly(fun) do
    fun.()
  catch
    :exit, _ -> :ok
  end

  alias WsPort.Test.JsonRpcPeer, as: Server
  alias WsPort.Test.ReportClient

  @scope :ws_port_multinode
  @group :pool

  setup_all do
    {_, 0} = System.cmd("epmd", ["-daemon"])

    started_dist =
      if Node.alive?() do
        false
      else
        name = :"ws_port_mn_#{System.unique_integer([:positive])}@127.0.0.1"
        {:ok, _} = :net_kernel.start([name, :longnames])
        true
      end

    on_exit(fn -> if started_dist, do: :net_kernel.stop() end)
    :ok
  end

  defp start_peer_node do
    name = :"ws_port_peer_#{System.unique_integer([:positive])}"

    {:ok, peer, node} =
      :peer.start_link(%{
        name: name,
        host: ~c"127.0.0.1",
        longnames: true,
        args: [~c"-setcookie", Atom.to_charlist(Node.get_cookie())]
      })

    Process.unlink(peer)
    :ok = :erpc.call(node, :code, :add_paths, [:code.get_path()])

    for {mod, bin} <- WsPort.Test.Clients.binaries() do
      {:module, ^mod} = :erpc.call(node, :code, :load_binary, [mod, ~c"nofile", bin])
    end

    {:ok, _} = :erpc.call(node, :application, :ensure_all_started, [:ws_port])
    {peer, node}
  end

  defp members, do: :pg.get_members(@scope, @group)

  defp wait_until(fun, timeout \\ 10_000) do
    cond do
      fun.() -> :ok
      timeout <= 0 -> flunk("condition not met in time; :pg members: #{inspect(members())}")
      true -> Process.sleep(20) && wait_until(fun, timeout - 20)
    end
  end

  test "send_balanced over :pg reaches the other node and fails over" do
    {:ok, scope} = :pg.start(@scope)
    on_exit(fn -> quietly(fn -> GenServer.stop(scope) end) end)
    server_a = Server.start!()
    server_b = Server.start!()
    on_exit(fn -> Server.stop(server_a) && Server.stop(server_b) end)

    {peer, node_b} = start_peer_node()
    on_exit(fn -> quietly(fn -> :peer.stop(peer) end) end)

    # the client on node B joins the group once connected
    {_holder, client_b} =
      :erpc.call(node_b, WsPort.Test.PeerHelper, :start_pool, [
        @scope,
        @group,
        Server.url(server_b, "/echo?tag=b"),
        self()
      ])

    assert node(client_b) == node_b
    assert_receive {:client, :connect, ^client_b, _}, 10_000
    wait_until(fn -> members() == [client_b] end)

    discovery = fn -> :pg.get_members(@scope, @group) end

    assert :ok =
             :ws_port_client_sup.send_balanced({:text, "to-b"}, %{client_discovery: discovery})

    Server.await_line(server_b, "RECV /echo?tag=b to-b")
    assert_receive {:client, :frame, ^client_b, {:text, "to-b"}}, 5000

    # a client on this node joins too
    {:ok, sup} = :ws_port_client_sup.start_link(%{name: false})
    on_exit(fn -> if Process.alive?(sup), do: Process.exit(sup, :shutdown) end)
    Process.unlink(sup)

    {:ok, client_a} =
      :ws_port_client_sup.start_client(sup, Server.url(server_a, "/echo?tag=a"), %{
        module: ReportClient,
        init_arg: [test: self()],
        retry: %{delay: 100, max_delay: 300},
        on_connect: {:pg, :join, [@scope, @group]},
        on_disconnect: {:pg, :leave, [@scope, @group]}
      })

    assert_receive {:client, :connect, ^client_a, _}, 5000
    wait_until(fn -> Enum.sort(members()) == Enum.sort([client_a, client_b]) end)

    # node B's server goes away: its client leaves the group, A takes over
    port_b = Server.port(server_b)
    Server.stop(server_b)
    assert_receive {:client, :disconnect, ^client_b, %{final: false}}, 5000
    wait_until(fn -> members() == [client_a] end)

    assert :ok =
             :ws_port_client_sup.send_balanced({:text, "to-a"}, %{client_discovery: discovery})

    Server.await_line(server_a, "RECV /echo?tag=a to-a")
    assert_receive {:client, :frame, ^client_a, {:text, "to-a"}}, 5000

    # a stale list naming B first: B is not connected, A takes it
    stale = fn -> [client_b, client_a] end
    assert :ok = :ws_port_client_sup.send_balanced({:text, "stale"}, %{client_discovery: stale})
    assert_receive {:client, :frame, ^client_a, {:text, "stale"}}, 5000

    # B's server comes back on its port: B reconnects and rejoins
    server_b2 = Server.start!(port: port_b)
    on_exit(fn -> Server.stop(server_b2) end)
    assert_receive {:client, :connect, ^client_b, %{reconnects: 1}}, 10_000
    wait_until(fn -> length(members()) == 2 end)

    # node B goes away entirely: its pid is skipped, A takes it
    :peer.stop(peer)
    wait_until(fn -> members() == [client_a] end)

    assert :ok =
             :ws_port_client_sup.send_balanced({:text, "after-node-b"}, %{client_discovery: stale})

    assert_receive {:client, :frame, ^client_a, {:text, "after-node-b"}}, 5000
  end
end
