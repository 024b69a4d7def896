Code.require_file("support/peer.exs", __DIR__)
Code.require_file("support/test_clients.exs", __DIR__)

defmodule WsPort.APIValidationTest do
  @moduledoc """
  What `WsPort` and `WsPort.Client` refuse, and how, seen from Elixir:
  through the real port program and the python3-websockets test server
  (test/peers/ws_server.py) on 127.0.0.1.

  Arguments of the wrong shape raise `ArgumentError` naming the argument
  (from the error_info of `:ws_port`'s `badarg`), nothing reaches the port
  and nothing is logged; a message the connection may not send is an error
  return; option mistakes are `{:error, {:bad_option, name, value}}`.
  """
  use ExUnit.Case, async: false
  import ExUnit.CaptureLog

  alias WsPort.Test.{Peer, ReportClient}

  @moduletag timeout: 120_000
  # liveness bound, not a performance threshold
  @wait 20_000

  setup_all do
    # capture_log needs Elixir's logger
    {:ok, _} = Application.ensure_all_started(:logger)
    {:ok, _} = Application.ensure_all_started(:ws_port)
    peer = Peer.start!(:python)
    on_exit(fn -> Peer.stop(peer) end)
    %{url: "ws://127.0.0.1:#{Peer.port(peer)}"}
  end

  # a pid of another node (not connected): self() with its node renamed in
  # the external term format
  defp remote_pid do
    bin = :erlang.term_to_binary(self(), minor_version: 2)
    node = Atom.to_string(node())
    other = String.duplicate("x", byte_size(node))
    [head, tail] = :binary.split(bin, node)
    :erlang.binary_to_term(head <> other <> tail)
  end

  defp echo!(conn) do
    tag = "echo #{System.unique_integer([:positive])}"
    :ok = WsPort.send_text(conn, tag)
    assert_receive {:ws_port, ^conn, {:text, ^tag}}, @wait
  end

  test "bad arguments raise ArgumentError naming them; nothing is logged", %{url: url} do
    {:ok, conn} = WsPort.connect(url <> "/echo")

    calls = [
      {fn -> WsPort.send(conn, {:text, 123}) end,
       "2nd argument: the payload of a text message must be iodata"},
      {fn -> WsPort.send_text(conn, :hello) end,
       "2nd argument: the payload of a text message must be iodata"},
      {fn -> WsPort.send(conn, :bad) end,
       "2nd argument: a message is {text | binary | ping | pong, iodata()}"},
      {fn -> WsPort.send(:nope, {:text, "x"}) end, "1st argument: not a ws_port connection"},
      {fn -> WsPort.close(conn, 999, "x") end,
       "2nd argument: 999 is not a close code a client may send"},
      {fn -> WsPort.close(conn, 1000, String.duplicate("a", 124)) end,
       "3rd argument: the close reason must be UTF-8 of at most 123 bytes"},
      {fn -> WsPort.controlling_process(conn, :nope) end,
       "2nd argument: the new owner must be a pid"},
      # documented, but the connection was handed to it
      {fn -> WsPort.controlling_process(conn, remote_pid()) end,
       "2nd argument: the new owner must be a local pid"},
      {fn -> WsPort.info("x") end, "1st argument: not a ws_port connection"},
      {fn -> WsPort.setopts(conn, :active) end, "2nd argument: options are a list"}
    ]

    log =
      capture_log(fn ->
        for {call, message} <- calls do
          error = assert_raise ArgumentError, call
          assert Exception.message(error) =~ message
        end

        # erts reports a bad port command asynchronously: give it the time
        echo!(conn)
      end)

    # before: "Bad value on output port '.../priv/ws_port'"
    assert log == ""
    refute_received {:ws_port_error, ^conn, _}
    :ok = WsPort.close(conn)
  end

  test "text that is not UTF-8 and oversized messages are refused at the call", %{url: url} do
    {:ok, conn} = WsPort.connect(url <> "/echo", max_message_size: 100)
    # before: :ok, then the server closed with 1007 and ws_port reconnected
    assert {:error, {:invalid_utf8, 0}} = WsPort.send_text(conn, <<255, 254>>)
    assert {:error, {:invalid_utf8, 3}} = WsPort.send(conn, {:text, ["hé", <<0xE9>>]})

    assert {:error, {:too_large, 126, 125}} =
             WsPort.send(conn, {:ping, String.duplicate("p", 126)})

    assert {:error, {:too_large, 101, 100}} = WsPort.send_binary(conn, :binary.copy(<<1>>, 101))
    echo!(conn)
    refute_received {:ws_port_down, ^conn, _, _}
    refute_received {:ws_port_error, ^conn, _}
    :ok = WsPort.close(conn)
  end

  test "info/1 carries the negotiated subprotocol and the response headers", %{url: url} do
    {:ok, conn} = WsPort.connect(url <> "/subprotocol", protocols: ["chat.v2"])
    assert_receive {:ws_port, ^conn, {:text, "chat.v2"}}, @wait
    assert {:ok, %{protocol: "chat.v2", headers: headers}} = WsPort.info(conn)

    assert Enum.any?(headers, fn {name, value} ->
             String.downcase(name) == "sec-websocket-protocol" and value == "chat.v2"
           end)

    :ok = WsPort.close(conn)
  end

  test "option mistakes name the option", %{url: url} do
    url = url <> "/echo"
    # a keyword list with a key twice: the later one won before
    assert {:error, {:bad_option, {:duplicate, :active}, :once}} =
             WsPort.connect(url, active: true, active: :once)

    assert {:error, {:bad_option, :active, -3}} = WsPort.connect(url, active: -3)
    # before: {:error, {:bad_option, "header is set by the handshake itself"}}
    assert {:error, {:bad_option, :headers, [{"Host", "example.com"}]}} =
             WsPort.connect(url, headers: [{"Host", "example.com"}])

    # set by the `protocols` and `compress` options, never twice
    for {name, value} <- [
          {"Sec-WebSocket-Protocol", "chat.v1"},
          {"sec-websocket-extensions", "permessage-deflate"}
        ] do
      assert {:error, {:bad_option, :headers, [{^name, ^value}]}} =
               WsPort.connect(url, headers: [{name, value}])
    end

    assert {:error, {:bad_option, :opts, :bad}} = WsPort.connect(url, :bad)
  end

  test "WsPort.Client and WsPort.Sync: arguments of the wrong shape raise ArgumentError naming them",
       %{url: url} do
    {:ok, conn} = WsPort.Sync.connect(url <> "/echo")
    {:ok, pid} = ReportClient.start_link(url: url <> "/echo", init_arg: [test: self()])
    assert_receive {:client, :connect, ^pid, _}, @wait
    not_client = "1st argument: not a ws_port_client"

    calls = [
      # an ArithmeticError in ws_port_sync
      {fn -> WsPort.Sync.receive_frame(conn, :soon) end,
       "2nd argument: the timeout must be infinity or an integer >= 0 (ms), got soon"},
      {fn -> WsPort.Sync.receive_frame(conn, -5) end,
       "2nd argument: the timeout must be infinity or an integer >= 0 (ms), got -5"},
      # {:error, {:function_clause, stacktrace}} from gen:do_for_proc/2
      {fn -> WsPort.Client.send_frame("client", "x") end, not_client},
      # exits with a function_clause in gen
      {fn -> WsPort.Client.close("client") end, not_client},
      {fn -> WsPort.Client.health(42) end, not_client},
      {fn -> WsPort.Client.connection(~c"client") end, not_client},
      {fn -> WsPort.Client.call({:a, :b, :c}, :ping) end, not_client},
      {fn -> WsPort.Client.cast("client", :ping) end, not_client},
      # a timeout_value error from inside gen
      {fn -> WsPort.Client.send_frame(pid, "x", :soon) end,
       "3rd argument: the timeout must be infinity or an integer >= 0 (ms), got soon"},
      {fn -> WsPort.Client.health(pid, -1) end,
       "2nd argument: the timeout must be infinity or an integer >= 0 (ms), got -1"}
    ]

    for {call, message} <- calls do
      error = assert_raise ArgumentError, call
      assert Exception.message(error) =~ message
    end

    # the client and the connection are unharmed
    assert :ok = WsPort.Client.send_frame(pid, "still here")
    assert_receive {:client, :frame, ^pid, {:text, "still here"}}, @wait
    :ok = WsPort.Sync.send(conn, "and here")
    assert {:ok, {:text, "and here"}} = WsPort.Sync.receive_frame(conn, @wait)
    :ok = WsPort.Client.close(pid)
    :ok = WsPort.Sync.close(conn)
  end

  test "a URL may be a %URI{}, wherever a URL is taken", %{url: url} do
    uri = URI.parse(url <> "/echo?tag=uri")
    expected = url <> "/echo?tag=uri"

    {:ok, conn} = WsPort.connect(uri)
    echo!(conn)
    assert {:ok, %{url: ^expected}} = WsPort.info(conn)
    :ok = WsPort.close(conn)

    {:ok, pid} = ReportClient.start_link(url: uri, heartbeat: :none, init_arg: [test: self()])
    assert_receive {:client, :connect, ^pid, %{url: ^expected}}, @wait
    :ok = WsPort.Client.close(pid)

    {:ok, sup} = WsPort.ClientSupervisor.start_link(name: false)

    {:ok, pid} =
      WsPort.ClientSupervisor.start_client(uri,
        supervisor: sup,
        module: ReportClient,
        init_arg: [test: self()]
      )

    assert_receive {:client, :connect, ^pid, %{url: ^expected}}, @wait
    :ok = WsPort.ClientSupervisor.stop_client(sup, pid)
    :ok = Supervisor.stop(sup)

    # made back into the string URI.to_string/1 gives; the scheme's default
    # port (that URI.parse/1 fills in) left out, IPv6 hosts in brackets
    for s <- [
          "wss://example.com/a/b?c=1&d=%20#frag",
          "ws://user:pw@example.com:8080/",
          "ws://[::1]:4000/socket/websocket?vsn=2.0.0",
          "WSS://Example.com"
        ] do
      assert {:ok, URI.to_string(URI.parse(s))} == :ws_port_proto.normalize_url(URI.parse(s))
    end

    assert {:ok, "ws://example.com/x"} =
             :ws_port_proto.normalize_url(URI.parse("ws://example.com/x"))

    assert {:ok, "wss://example.com"} =
             :ws_port_proto.normalize_url(URI.parse("wss://example.com:443"))

    # and refused as a string would be, naming why
    assert {:error, {:invalid_url, "scheme must be ws:// or wss://"}} =
             WsPort.connect(URI.parse("http://127.0.0.1:1/"))

    assert {:error, {:invalid_url, "a %URI{} without a scheme and host"}} =
             WsPort.connect(URI.parse("/just/a/path"))

    assert {:error, {:invalid_url, "a %URI{} without a scheme and host"}} =
             ReportClient.start_link(url: %URI{scheme: "ws"}, init_arg: [test: self()])

    # the producer's :url
    assert {:ok, config} = WsPort.ProducerOptions.validate(url: uri)
    assert config.url == expected
  end

  test "a `use WsPort.Client` module's start_link without :url says so", _ do
    # was a KeyError raised in the caller
    assert {:error, {:bad_option, :url, :undefined}} =
             ReportClient.start_link(init_arg: [test: self()])

    assert Process.alive?(self())
  end

  test "a misspelled option of a `use WsPort.Client` module's start_link is refused", %{url: url} do
    # before: ignored (the client ran with the default heartbeat)
    assert {:error, {:bad_option, :hearbeat, :none}} =
             ReportClient.start_link(
               url: url <> "/echo",
               hearbeat: :none,
               init_arg: [test: self()]
             )

    assert {:error, {:bad_option, {:duplicate, :window}, 5}} =
             ReportClient.start_link(url: url <> "/echo", window: 4, window: 5)

    # the caller is not killed by the refusal (it is not an exit signal)
    assert Process.alive?(self())

    {:ok, pid} =
      ReportClient.start_link(url: url <> "/echo", heartbeat: :none, init_arg: [test: self()])

    assert_receive {:client, :connect, ^pid, _}, @wait
    assert WsPort.Client.health(pid).heartbeat == :none
    :ok = WsPort.Client.close(pid)
  end
end
