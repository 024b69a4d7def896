Code.require_file("support/peer.exs", __DIR__)
Code.require_file("support/phoenix_clients.exs", __DIR__)

defmodule WsPort.Test.TelemetryForward do
  @moduledoc "A telemetry stand-in (no Hex here): forwards every event to the registered test process."
  def execute(event, measurements, meta) do
    case Process.whereis(:phoenix_telemetry_test) do
      nil -> :ok
      pid -> send(pid, {:telemetry, event, measurements, meta})
    end
  end
end

defmodule WsPort.PhoenixTelemetryTest do
  @moduledoc """
  The Phoenix client's telemetry events (documented in ws_port_phoenix_conn)
  through ws_port_telemetry, with a stand-in for the telemetry library put
  where ws_port_telemetry looks for it.
  """
  use ExUnit.Case, async: false

  @moduletag :capture_log

  alias WsPort.Test.{Peer, PhoenixReportClient}

  @backend {:ws_port_telemetry, :backend}

  setup do
    peer = Peer.start!(:phoenix)
    old = :persistent_term.get(@backend, :undefined)
    :persistent_term.put(@backend, WsPort.Test.TelemetryForward)
    Process.register(self(), :phoenix_telemetry_test)

    on_exit(fn ->
      if old == :undefined,
        do: :persistent_term.erase(@backend),
        else: :persistent_term.put(@backend, old)

      Peer.stop(peer)
    end)

    {:ok, peer: peer, url: "ws://127.0.0.1:#{Peer.port(peer)}/socket/websocket"}
  end

  test "connect, join, push, heartbeat, bad input and message events", %{url: url, peer: peer} do
    {:ok, socket} =
      WsPort.Phoenix.connect(url, params: %{token: "secret"}, heartbeat_interval: 50)

    assert_receive {:telemetry, [:ws_port, :phoenix, :connect, :start], %{system_time: _}, meta}
    assert meta.url == url
    assert_receive {:telemetry, [:ws_port, :phoenix, :connect, :stop], %{duration: d}, meta}
    assert d > 0 and meta.result == :ok and meta.reconnect == false
    # the token in the query string stays out of telemetry
    refute meta.url =~ "secret"

    {:ok, _} = WsPort.Phoenix.join(socket, "room:t")

    assert_receive {:telemetry, [:ws_port, :phoenix, :join, :start], _,
                    %{topic: "room:t", rejoin: false}}

    assert_receive {:telemetry, [:ws_port, :phoenix, :join, :stop], %{duration: _},
                    %{topic: "room:t", result: :ok}}

    {:error, _} = WsPort.Phoenix.join(socket, "room:forbidden")

    assert_receive {:telemetry, [:ws_port, :phoenix, :join, :stop], _,
                    %{topic: "room:forbidden", result: :error}}

    {:ok, _} = WsPort.Phoenix.push(socket, "room:t", "echo", %{})

    assert_receive {:telemetry, [:ws_port, :phoenix, :push, :start], _,
                    %{topic: "room:t", event: "echo"}}

    assert_receive {:telemetry, [:ws_port, :phoenix, :push, :stop], %{duration: _},
                    %{event: "echo", result: :ok}}

    assert_receive {:telemetry, [:ws_port, :phoenix, :heartbeat], %{rtt_us: rtt}, _}, 5000
    assert is_integer(rtt) and rtt >= 0

    assert "OK 1" = Peer.control(peer, "raw room:t not json")

    assert_receive {:telemetry, [:ws_port, :phoenix, :bad_input], %{count: 1},
                    %{kind: :bad_frame}},
                   5000

    # a reconnect: after phoenix.js's first delay (10 ms, ws_port's retry
    # telemetry says), a connect stop with reconnect: true, and a rejoin
    {:error, :disconnected} = WsPort.Phoenix.push(socket, "room:t", "drop_socket", %{})
    assert_receive {:telemetry, [:ws_port, :connection, :retry], %{delay_ms: 10}, _}, 5000

    assert_receive {:telemetry, [:ws_port, :phoenix, :connect, :stop], _,
                    %{reconnect: true, result: :ok}},
                   5000

    assert_receive {:telemetry, [:ws_port, :phoenix, :join, :stop], _,
                    %{topic: "room:t", rejoin: true}},
                   5000

    :ok = WsPort.Phoenix.disconnect(socket)
  end

  test "message handled by a client module", %{url: url} do
    {:ok, pid} =
      WsPort.Phoenix.Client.start(PhoenixReportClient,
        url: url,
        params: %{token: "good"},
        init_arg: [test: self(), joins: [{"room:m", %{}}]]
      )

    assert_receive {:phx, :join, {"room:m", {:ok, _}}}, 5000
    GenServer.cast(pid, {:push, "room:m", "push_me", %{"x" => 1}})
    assert_receive {:phx, :message, {"room:m", "pushed", %{"x" => 1}}}, 5000

    assert_receive {:telemetry, [:ws_port, :phoenix, :message], %{duration: _},
                    %{topic: "room:m", event: "pushed", module: PhoenixReportClient}}

    WsPort.Phoenix.Client.stop(pid)
  end
end
