Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.PhoenixServerTest do
  @moduledoc """
  Proves the Phoenix-protocol test server (test/peers/phoenix_server.py)
  faithful: the official Phoenix JS client (npm `phoenix`, with node's `ws`
  as its transport; test/peers/phoenix_js_client.js) runs every scenario the
  ws_port Phoenix client is tested with against it, over ws and wss. If
  the server spoke anything Phoenix does not, phoenix.js would not get its
  replies, broadcasts, binary frames, phx_error/phx_close or heartbeats.
  """
  use ExUnit.Case, async: false

  alias WsPort.Test.{Certs, Peer}

  @scenarios ~w(join_ok join_refused echo_and_error broadcast server_push binary
                crash_rejoins server_leave client_leave dropped_socket_rejoins
                server_close_rejoins heartbeat heartbeat_timeout forbidden serializer_v1)

  defp run_js(url, env \\ []) do
    Peer.ensure_node_modules!()
    node = System.find_executable("node") || raise "node is not on PATH"
    script = Path.join(Peer.peers_dir(), "phoenix_js_client.js")

    System.cmd(node, [script, url],
      env: env,
      cd: Peer.peers_dir(),
      stderr_to_stdout: true
    )
  end

  defp assert_all_pass({out, status}) do
    lines = String.split(out, "\n", trim: true)
    passed = for "PASS " <> name <- lines, do: name
    assert {Enum.sort(passed), status} == {Enum.sort(@scenarios), 0}, out
    assert "DONE #{length(@scenarios)} 0" in lines
  end

  test "phoenix.js passes every scenario against the test server over ws" do
    peer = Peer.start!(:phoenix)
    on_exit(fn -> Peer.stop(peer) end)

    assert_all_pass(run_js("ws://127.0.0.1:#{Peer.port(peer)}/socket"))

    # what the server saw: phoenix.js's own URL, heartbeats, a 403, the
    # crash and the rejoin it caused
    assert Peer.await_line(peer, "CONNECT ") =~ "vsn=2.0.0"
    assert Peer.await_line(peer, "HEARTBEAT ")
    assert Peer.await_line(peer, "FORBIDDEN ") =~ "token=bad"
    assert Peer.await_line(peer, "CRASH ") =~ "room:crash"

    assert length(Peer.await_count(peer, ~r/^JOIN \S+ room:crash /, 2)) == 2
  end

  test "phoenix.js passes every scenario against the test server over wss" do
    certs = Certs.make!()
    on_exit(fn -> Certs.cleanup(certs) end)
    peer = Peer.start!(:phoenix, tls: {certs.server.cert, certs.server.key})
    on_exit(fn -> Peer.stop(peer) end)

    assert_all_pass(
      run_js("wss://localhost:#{Peer.port(peer)}/socket", [
        {"NODE_EXTRA_CA_CERTS", certs.ca.cert}
      ])
    )
  end
end
