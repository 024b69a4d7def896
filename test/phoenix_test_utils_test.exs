Code.require_file("support/phoenix_clients.exs", __DIR__)

defmodule WsPort.PhoenixTestUtilsTest do
  @moduledoc """
  WsPort.Phoenix.Test: a client module tested with no server at all (the
  same module phoenix_client_test.exs runs against the real server through
  the port program). Also from Erlang (:ws_port_phoenix_test), as EUnit
  would use it.
  """
  use ExUnit.Case, async: true

  @moduletag :capture_log

  alias WsPort.Phoenix.Test, as: PT
  alias WsPort.Test.PhoenixReportClient

  defp start!(arg, opts \\ []) do
    {:ok, client} =
      PT.start_client(PhoenixReportClient, [init_arg: [test: self()] ++ arg] ++ opts)

    :ok = PT.accept_connect(client)
    assert_receive {:phx, :connect, nil}
    client
  end

  test "join, push and reply, server pushes and broadcasts, refute" do
    client = start!(joins: [{"room:1", %{"user" => "ann"}}])

    assert %{"user" => "ann"} = PT.assert_join(client, "room:1", :_, {:ok, %{"welcome" => true}})
    assert_receive {:phx, :join, {"room:1", {:ok, %{"welcome" => true}}}}

    GenServer.cast(client, {:push, "room:1", "new_msg", %{"body" => "hi"}})
    assert_receive {:phx, :pushed, {:ok, ref}}
    assert ^ref = PT.assert_push(client, "room:1", "new_msg", %{"body" => "hi"})
    :ok = PT.reply(client, "room:1", ref, {:error, %{"reason" => "slow down"}})
    assert_receive {:phx, :reply, {^ref, {:error, %{"reason" => "slow down"}}}}

    :ok = PT.push(client, "room:1", "news", %{"n" => 1, "none" => nil})
    assert_receive {:phx, :message, {"room:1", "news", %{"n" => 1, "none" => nil}}}
    :ok = PT.broadcast(client, "room:1", "shout", {:binary, <<1, 2>>})
    assert_receive {:phx, :message, {"room:1", "shout", {:binary, <<1, 2>>}}}

    :ok = PT.refute_push(client, "room:1", "new_msg", 50)

    GenServer.cast(client, {:push, "room:1", "new_msg", %{"body" => "again"}})

    assert_raise ExUnit.AssertionError, ~r/expected no push of new_msg on room:1/, fn ->
      PT.refute_push(client, "room:1", "new_msg", 500)
    end
  end

  test "assert_push_match binds what the client pushed" do
    require WsPort.Phoenix.Test
    client = start!(joins: [{"room:1", %{}}])
    PT.assert_join(client, "room:1", :_, {:ok, %{}})

    GenServer.cast(client, {:push, "room:1", "new_msg", %{"body" => "hi there", "n" => 3}})
    assert_receive {:phx, :pushed, {:ok, ref}}
    n = 3
    assert ^ref = PT.assert_push_match(client, "room:1", "new_msg", %{"body" => body, "n" => ^n})
    assert body == "hi there"

    GenServer.cast(client, {:push, "room:1", "new_msg", %{"body" => "x"}})

    assert_raise ExUnit.AssertionError, ~r/matching %\{"n" => 4\}, got %\{"body" => "x"\}/, fn ->
      PT.assert_push_match(client, "room:1", "new_msg", %{"n" => 4})
    end
  end

  test "a refused join" do
    client = start!(joins: [{"room:secret", %{}}])
    PT.assert_join(client, "room:secret", %{}, {:error, %{"reason" => "unauthorized"}})
    assert_receive {:phx, :join, {"room:secret", {:error, %{"reason" => "unauthorized"}}}}
    :ok = PT.refute_push(client, "room:secret", "phx_join", 100)
  end

  test "phx_error: the client rejoins; phx_close: it does not" do
    client = start!([joins: [{"room:1", %{"k" => 1}}]], rejoin_after: fn _ -> 10 end)
    PT.assert_join(client, "room:1", %{"k" => 1}, {:ok, %{}})

    :ok = PT.crash_channel(client, "room:1")
    assert_receive {:phx, :topic_close, {"room:1", :crashed}}
    PT.assert_join(client, "room:1", %{"k" => 1}, {:ok, %{}})
    assert_receive {:phx, :join, {"room:1", {:ok, %{}}}}
    assert_receive {:phx, :join, {"room:1", {:ok, %{}}}}

    :ok = PT.close_channel(client, "room:1")
    assert_receive {:phx, :topic_close, {"room:1", :closed}}
    :ok = PT.refute_push(client, "room:1", "phx_join", 100)
  end

  test "disconnects: rejoin after the reconnect; a final close ends the client" do
    Process.flag(:trap_exit, true)
    client = start!(joins: [{"room:1", %{}}])
    PT.assert_join(client, "room:1", :_, {:ok, %{}})
    GenServer.cast(client, {:join, "room:2", %{"late" => true}})
    PT.assert_join(client, "room:2", %{"late" => true}, {:ok, %{}})

    :ok = PT.disconnect(client, :econnreset)
    assert_receive {:phx, :disconnect, :econnreset}
    :ok = PT.accept_connect(client)
    assert_receive {:phx, :connect, nil}
    PT.assert_join(client, "room:1", :_, {:ok, %{}})
    PT.assert_join(client, "room:2", %{"late" => true}, {:ok, %{}})

    GenServer.cast(client, {:leave, "room:2"})
    :ok = PT.assert_leave(client, "room:2")
    assert_receive {:phx, :leave, "room:2"}

    :ok = PT.close(client, {:remote, 1008, "policy"})
    assert_receive {:EXIT, ^client, {:closed, {:remote, 1008, "policy"}}}, 5000
  end

  test "a failed assertion says what was expected and what came" do
    client = start!(joins: [{"room:1", %{}}])

    assert_raise ExUnit.AssertionError,
                 ~r/expected phx_join on room:9 .* got phx_join on room:1/,
                 fn ->
                   PT.assert_join(client, "room:9", :_, {:ok, %{}})
                 end

    assert_raise ExUnit.AssertionError, ~r/expected x on room:1 within 50 ms, got nothing/, fn ->
      PT.assert_push(client, "room:1", "x", :_, 50)
    end

    assert_raise ExUnit.AssertionError, ~r/room:7 is not joined/, fn ->
      PT.push(client, "room:7", "news", %{})
    end
  end

  test "from Erlang, as EUnit would use it (null is the atom null)" do
    {:ok, client} =
      :ws_port_phoenix_test.start_client(PhoenixReportClient, %{
        init_arg: [test: self(), joins: [{"room:1", %{}}]],
        null: :null
      })

    :ok = :ws_port_phoenix_test.accept_connect(client)
    %{} = :ws_port_phoenix_test.assert_join(client, "room:1", :_, {:ok, %{}})
    :ok = :ws_port_phoenix_test.push(client, "room:1", "news", %{"a" => :null})
    assert_receive {:phx, :message, {"room:1", "news", %{"a" => :null}}}

    assert {:ws_port_phoenix_test, "expected x on room:1 within 10 ms, got nothing"} =
             catch_error(:ws_port_phoenix_test.assert_push(client, "room:1", "x", :_, 10))
  end
end
