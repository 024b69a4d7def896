Code.require_file("support/peer.exs", __DIR__)

defmodule WsPort.Test.CountingJSON do
  @moduledoc "A JSON module shaped like Jason ({:ok, _} results) that counts its calls."
  def encode(term), do: count(:ws_port_json.encode_to_binary(term))
  def decode(bin), do: count(:ws_port_json.decode(bin, %{null: nil}))

  defp count(result) do
    :persistent_term.put(__MODULE__, :persistent_term.get(__MODULE__, 0) + 1)
    result
  end
end

defmodule WsPort.PhoenixTest do
  @moduledoc """
  WsPort.Phoenix / :ws_port_phoenix end to end: the real port program
  against test/peers/phoenix_server.py (proven faithful to Phoenix by
  phoenix.js in phoenix_server_test.exs) on 127.0.0.1, over ws and wss.
  """
  use ExUnit.Case, async: false

  @moduletag :capture_log

  alias WsPort.Phoenix
  alias WsPort.Test.{Certs, Peer}

  setup do
    peer = Peer.start!(:phoenix)
    on_exit(fn -> Peer.stop(peer) end)
    {:ok, peer: peer, url: "ws://127.0.0.1:#{Peer.port(peer)}/socket/websocket"}
  end

  defp connect!(url, opts \\ []) do
    opts = Keyword.merge([params: %{token: "good"}, rejoin_after: fn _ -> 50 end], opts)
    {:ok, socket} = Phoenix.connect(url, opts)
    on_exit(fn -> disconnect_quietly(socket) end)
    socket
  end

  # the socket may be gone already (linked to the finished test)
  defp disconnect_quietly(socket) do
    Phoenix.disconnect(socket)
  catch
    :exit, _ -> :ok
  end

  # the server's lines matching a regex
  defp lines(peer, regex), do: Enum.filter(Peer.lines(peer), &(&1 =~ regex))

  defp wait_until(fun, timeout \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Stream.repeatedly(fn ->
      fun.() || (Process.sleep(20) && System.monotonic_time(:millisecond) > deadline && :gave_up)
    end)
    |> Enum.find(& &1)
    |> case do
      :gave_up -> flunk("condition not met within #{timeout} ms")
      value -> value
    end
  end

  describe "compression" do
    test "compress: true negotiates permessage-deflate with a server that offers it (Phoenix's compress: true)" do
      peer = Peer.start!(:phoenix, args: ["--compress"])
      on_exit(fn -> Peer.stop(peer) end)
      url = "ws://127.0.0.1:#{Peer.port(peer)}/socket/websocket"
      socket = connect!(url, compress: true)

      assert {:ok, %{"topic" => "room:z"}} = Phoenix.join(socket, "room:z")
      big = String.duplicate("compressible ", 2000)
      assert {:ok, %{"text" => ^big}} = Phoenix.push(socket, "room:z", "echo", %{text: big})

      {:ok, info} = :ws_port.info(Phoenix.info(socket).connection)
      assert %{bytes_out_plain: out_plain, bytes_out_wire: out_wire} = info.compression
      assert %{bytes_in_plain: in_plain, bytes_in_wire: in_wire} = info.compression
      # the echo went both ways compressed: far fewer bytes on the wire
      assert out_wire * 5 < out_plain and in_wire * 5 < in_plain
    end
  end

  describe "joining and pushing" do
    test "join with params, echo and error replies", %{url: url, peer: peer} do
      socket = connect!(url, params: %{token: "good", user: "ann"})

      assert {:ok, reply} = Phoenix.join(socket, "room:a", %{"hello" => "world"})
      assert reply["topic"] == "room:a"
      assert reply["params"] == %{"hello" => "world"}
      assert reply["connect_params"] == %{"token" => "good", "user" => "ann"}
      assert Peer.await_line(peer, "CONNECT ") =~ "vsn=2.0.0"

      assert {:ok, %{"n" => 1, "s" => "é", "nothing" => nil}} =
               Phoenix.push(socket, "room:a", "echo", %{n: 1, s: "é", nothing: nil})

      assert {:error, %{"why" => "no"}} = Phoenix.push(socket, "room:a", "error", %{why: "no"})

      assert {:error, %{"reason" => "unhandled event"}} =
               Phoenix.push(socket, "room:a", "nope", %{})
    end

    test "a refused join is an error and is not retried", %{url: url, peer: peer} do
      socket = connect!(url)

      assert {:error, %{"reason" => "unauthorized"}} = Phoenix.join(socket, "room:forbidden")

      assert {:error, %{"reason" => "unauthorized"}} =
               Phoenix.join(socket, "room:b", %{refuse: true})

      assert {:error, %{"reason" => "unmatched topic"}} = Phoenix.join(socket, "lobby")
      assert Phoenix.info(socket).topics == %{}
      # the refused topics can be tried again by the user
      assert {:ok, _} = Phoenix.join(socket, "room:b")
      assert length(lines(peer, ~r/^REFUSE /)) == 2
    end

    test "errors that name the problem", %{url: url} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:a")

      assert {:error, {:already_joined, "room:a"}} = Phoenix.join(socket, "room:a")
      assert {:error, {:not_joined, "room:z"}} = Phoenix.push(socket, "room:z", "echo", %{})
      assert {:error, {:bad_topic, :room}} = Phoenix.join(socket, :room)
      assert {:error, {:bad_topic, ~c"room:a"}} = Phoenix.push(socket, ~c"room:a", "echo", %{})
      assert {:error, {:bad_event, :echo}} = Phoenix.push(socket, "room:a", :echo, %{})
      assert {:error, {:not_joined, "room:z"}} = Phoenix.leave(socket, "room:z")

      assert {:error, {:unsupported, {:a, :tuple}}} =
               Phoenix.push(socket, "room:a", "echo", {:a, :tuple})

      assert {:error, {:bad_option, :serializer, :v3}} = Phoenix.connect(url, serializer: :v3)
      # the detail says what is wrong, as WsPort.connect/2's (it was the URL given)
      assert {:error, {:invalid_url, "not a string"}} = Phoenix.connect(42)
      assert {:error, {:invalid_url, "not a string"}} = Phoenix.connect(%{url: url})

      assert {:error, {:invalid_url, "scheme must be ws:// or wss://"}} =
               Phoenix.connect("http://127.0.0.1/socket/websocket")
    end

    test "connect refuses a JSON codec that is not one, and options that are not a list or map",
         %{url: url} do
      # a module that does not exist was taken: every join and push then
      # failed (a join after its timeout, with a warning in the log)
      assert {:error, {:bad_option, :json, NoSuchCodec}} = Phoenix.connect(url, json: NoSuchCodec)
      # no encode/1 and decode/1
      assert {:error, {:bad_option, :json, Enum}} = Phoenix.connect(url, json: Enum)
      # a Protocol.UndefinedError in Map.new/1, a function_clause in Erlang
      assert {:error, {:bad_option, :opts, :fast}} = Phoenix.connect(url, :fast)
      assert {:error, {:bad_option, :opts, :fast}} = :ws_port_phoenix.connect(url, :fast)
      # an option given twice is refused, as WsPort.connect/2 refuses it (the
      # Elixir facade took the last one)
      assert {:error, {:bad_option, {:duplicate, :heartbeat_interval}, 2}} =
               Phoenix.connect(url, heartbeat_interval: 1, heartbeat_interval: 2)

      assert {:ok, socket} = Phoenix.connect(url, json: WsPort.Test.CountingJSON)
      assert :ok = Phoenix.disconnect(socket)
    end

    test "join params that cannot be JSON are refused at once, as a push's payload is",
         %{url: url, peer: peer} do
      socket = connect!(url)
      # it logged a warning, sent nothing and waited out the join's timeout
      assert {:error, {:unsupported, {:a, 1}}} = Phoenix.join(socket, "room:a", [a: 1], 30_000)
      assert {:error, {:unsupported, pid}} = Phoenix.join(socket, "room:a", %{"p" => self()})
      assert pid == self()
      # the topic is not taken: a join with good params goes through
      assert Phoenix.info(socket).topics == %{}
      assert {:ok, %{"params" => %{"a" => 1}}} = Phoenix.join(socket, "room:a", %{a: 1})
      assert [_] = lines(peer, ~r/^JOIN \S+ room:a /)
    end

    test "a bad timeout is an error naming it; the socket and its caller live on",
         %{url: url} do
      socket = connect!(url)
      # it was a badarg in erlang:send_after/3 inside the socket process,
      # which took the linked caller down with it
      assert {:error, {:bad_timeout, :soon}} = Phoenix.join(socket, "room:a", %{}, :soon)
      assert {:error, {:bad_timeout, -1}} = Phoenix.join(socket, "room:a", %{}, -1)
      {:ok, _} = Phoenix.join(socket, "room:a")
      assert {:error, {:bad_timeout, 1.5}} = Phoenix.push(socket, "room:a", "echo", %{}, 1.5)

      assert {:error, {:bad_timeout, "5000"}} =
               Phoenix.await_message(socket, "room:a", "pushed", "5000")

      assert {:error, {:bad_timeout, nil}} = :ws_port_phoenix.leave(socket, "room:a", nil)
      assert {:error, {:bad_topic, :room}} = Phoenix.await_message(socket, :room, "pushed", 10)

      assert {:error, {:bad_event, :pushed}} =
               Phoenix.await_message(socket, "room:a", :pushed, 10)

      assert Process.alive?(socket)
      assert {:ok, %{"x" => 1}} = Phoenix.push(socket, "room:a", "echo", %{x: 1}, :infinity)
    end

    test "disconnect of a socket already disconnected is :ok, as WsPort.close/1's", %{url: url} do
      {:ok, socket} = Phoenix.connect(url, params: %{token: "good"})
      assert :ok = Phoenix.disconnect(socket)
      # it exited with :noproc (a gen_server call to the ended process)
      assert :ok = Phoenix.disconnect(socket)
      assert :ok = :ws_port_phoenix.disconnect(socket)
    end

    test "push_async: pushes in flight together, each reply to its ref, in any order awaited",
         %{url: url, peer: peer} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:a")

      refs =
        for i <- 1..50 do
          assert {:ok, ref} = Phoenix.push_async(socket, "room:a", "echo", %{i: i})
          {i, ref}
        end

      # all 50 reached the server before the first reply was taken, in the
      # order of the calls (Phoenix refs count up from the socket's first)
      events =
        wait_until(fn ->
          events = lines(peer, ~r/^EVENT \S+ room:a echo /)
          length(events) == 50 && events
        end)

      event_refs = Enum.map(events, &(&1 |> String.split() |> List.last() |> String.to_integer()))
      assert event_refs == Enum.sort(event_refs)
      assert length(Enum.uniq(event_refs)) == 50

      for {i, ref} <- Enum.reverse(refs) do
        assert {:ok, %{"i" => ^i}} = Phoenix.await_reply(ref)
      end

      # errors of the push come back through await_reply, as push/5 returns them
      {:ok, ref} = Phoenix.push_async(socket, "room:a", "error", %{why: "no"})
      assert {:error, %{"why" => "no"}} = Phoenix.await_reply(ref, 5000)
      {:ok, ref} = Phoenix.push_async(socket, "room:nope", "echo", %{})
      assert {:error, {:not_joined, "room:nope"}} = Phoenix.await_reply(ref)
      # the push's own timeout
      {:ok, ref} = Phoenix.push_async(socket, "room:a", "noreply", %{}, 100)
      assert {:error, :timeout} = Phoenix.await_reply(ref)
      # the wait's timeout: the late reply is dropped, not left in the mailbox
      {:ok, ref} = Phoenix.push_async(socket, "room:a", "sleep", %{ms: 300})
      assert {:error, :timeout} = Phoenix.await_reply(ref, 10)
      assert {:ok, %{"x" => 1}} = Phoenix.push(socket, "room:a", "echo", %{x: 1})
      refute_received _

      # bad arguments are named at once
      assert {:error, {:bad_topic, :t}} = Phoenix.push_async(socket, :t, "echo", %{})
      assert {:error, {:bad_event, 1}} = Phoenix.push_async(socket, "room:a", 1, %{})
      assert {:error, {:bad_timeout, -1}} = Phoenix.push_async(socket, "room:a", "echo", %{}, -1)
      assert {:error, {:bad_timeout, :soon}} = Phoenix.await_reply(ref, :soon)
      assert {:error, {:bad_ref, :nope}} = Phoenix.await_reply(:nope)
    end

    test "calls on a socket that has ended are {:error, {:closed, :noproc}}, not exits",
         %{url: url} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:a")
      {:ok, ref} = Phoenix.push_async(socket, "room:a", "sleep", %{ms: 2000})
      :ok = Phoenix.disconnect(socket)
      # the push in flight when the socket ended
      assert {:error, {:closed, _}} = Phoenix.await_reply(ref)
      assert {:error, {:closed, :noproc}} = Phoenix.join(socket, "room:b")
      assert {:error, {:closed, :noproc}} = Phoenix.push(socket, "room:a", "echo", %{})
      assert {:error, {:closed, :noproc}} = Phoenix.await_message(socket, "room:a", "x", 10)
      assert {:error, {:closed, :noproc}} = Phoenix.leave(socket, "room:a")
      {:ok, ref} = Phoenix.push_async(socket, "room:a", "echo", %{})
      assert {:error, {:closed, :noproc}} = Phoenix.await_reply(ref)
    end

    test "connect takes a %URI{}", %{url: url, peer: peer} do
      socket = connect!(URI.parse(url), params: %{token: "good", via: "uri"})
      assert Peer.await_line(peer, "CONNECT ") =~ "via=uri"
      assert {:ok, reply} = Phoenix.join(socket, "room:a")
      assert reply["connect_params"] == %{"token" => "good", "via" => "uri"}
    end

    test "a push without a reply times out", %{url: url} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:a")
      assert {:error, :timeout} = Phoenix.push(socket, "room:a", "noreply", %{}, 200)
      # the socket goes on
      assert {:ok, %{"x" => 1}} = Phoenix.push(socket, "room:a", "echo", %{x: 1})
    end

    test "leave, then join again; a server-side leave (phx_close)", %{url: url, peer: peer} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:a")
      assert :ok = Phoenix.leave(socket, "room:a")
      assert Peer.await_line(peer, "LEAVE ") =~ "room:a"
      assert {:error, {:not_joined, "room:a"}} = Phoenix.push(socket, "room:a", "echo", %{})
      assert {:ok, _} = Phoenix.join(socket, "room:a")

      assert {:ok, %{}} = Phoenix.push(socket, "room:a", "leave_me", %{})
      wait_until(fn -> Phoenix.info(socket).topics == %{} end)
      assert {:error, {:not_joined, "room:a"}} = Phoenix.push(socket, "room:a", "echo", %{})
    end

    test "a join without an answer times out and is not retried", %{url: url, peer: peer} do
      socket = connect!(url)
      assert {:error, :timeout} = Phoenix.join(socket, "room:s", %{"silent" => true}, 200)
      wait_until(fn -> Phoenix.info(socket).topics == %{} end)
      assert {:ok, _} = Phoenix.join(socket, "room:s")
      assert length(lines(peer, ~r/^SILENT /)) == 1
    end

    test "a refused upgrade (HTTP 403) is an error of connect", %{url: url, peer: peer} do
      assert {:error, {:http_status, 403, _headers}} =
               Phoenix.connect(url, params: %{token: "bad"})

      assert Peer.await_line(peer, "FORBIDDEN ") =~ "token=bad"
    end
  end

  describe "server messages" do
    test "pushes and broadcasts, also from another socket, in order", %{url: url} do
      socket = connect!(url)
      other = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:bc")
      {:ok, _} = Phoenix.join(other, "room:bc")

      assert {:ok, %{}} = Phoenix.push(other, "room:bc", "shout", %{"from" => "other"})
      assert {:ok, %{"from" => "other"}} = Phoenix.await_message(socket, "room:bc", "shout", 5000)
      assert {:ok, %{"from" => "other"}} = Phoenix.await_message(other, "room:bc", "shout", 5000)

      assert {:ok, %{}} = Phoenix.push(socket, "room:bc", "push_me", %{"only" => "me"})
      assert {:ok, %{"only" => "me"}} = Phoenix.await_message(socket, "room:bc", "pushed", 5000)
      assert {:error, :timeout} = Phoenix.await_message(other, "room:bc", "pushed", 100)

      assert {:ok, %{}} = Phoenix.push(socket, "room:bc", "count", %{n: 200})

      for i <- 1..200 do
        assert {:ok, %{"i" => ^i}} = Phoenix.await_message(socket, "room:bc", "item", 5000)
      end
    end

    test "a caller that does not take messages holds the server back (max_buffer)", %{url: url} do
      max = 50
      socket = connect!(url, max_buffer: max, window: 10)
      {:ok, _} = Phoenix.join(socket, "room:flood")
      n = 100_000

      # 100,000 broadcasts of ~230 bytes (23 MB, more than the socket
      # buffers hold); the reply comes only once the server wrote them all
      flood =
        Task.async(fn ->
          Phoenix.push(socket, "room:flood", "flood", %{n: n, size: 200}, :infinity)
        end)

      wait_until(fn -> Phoenix.info(socket).buffered >= max end)
      Process.sleep(500)
      # the socket stopped reading: the buffer did not grow past the credit
      # in flight, and the server is still writing
      assert Phoenix.info(socket).buffered <= max + 10
      assert Task.yield(flood, 0) == nil

      for _ <- 1..n,
          do: {:ok, %{"s" => _}} = Phoenix.await_message(socket, "room:flood", "tick", 5000)

      assert {:ok, %{}} = Task.await(flood, 10_000)
    end

    test "binary payloads: push, reply, server push and broadcast", %{url: url, peer: peer} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:bin")
      data = <<0, 1, 2, 255>>

      assert {:ok, {:binary, ^data}} = Phoenix.push(socket, "room:bin", "echo", {:binary, data})
      assert {:ok, %{}} = Phoenix.push(socket, "room:bin", "push_me", {:binary, <<9, 8>>})

      assert {:ok, {:binary, <<9, 8>>}} =
               Phoenix.await_message(socket, "room:bin", "pushed", 5000)

      assert "OK" = Peer.control(peer, "broadcast_binary room:bin news 0a0b")

      assert {:ok, {:binary, <<10, 11>>}} =
               Phoenix.await_message(socket, "room:bin", "news", 5000)
    end

    test "bad input from the server is counted, never a crash", %{url: url, peer: peer} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:x")

      assert "OK 1" = Peer.control(peer, "raw room:x this is not json")
      assert "OK 1" = Peer.control(peer, ~s(raw room:x {"not": "an array"}))

      assert "OK 1" =
               Peer.control(
                 peer,
                 ~s(raw room:x [null,"999","room:x","phx_reply",{"status":"ok","response":{}}])
               )

      assert "OK 1" = Peer.control(peer, ~s(raw room:x [null,null,"room:other","news",{}]))

      wait_until(fn -> Phoenix.info(socket).stats.bad_input == 4 end)

      assert {:ok, %{"still" => "here"}} =
               Phoenix.push(socket, "room:x", "echo", %{still: "here"})
    end
  end

  describe "serializers and codecs" do
    test "V1 (JSON objects)", %{url: url, peer: peer} do
      socket = connect!(url, serializer: :v1)
      assert Peer.await_line(peer, "CONNECT ") =~ "vsn=1.0.0"
      assert {:ok, %{"topic" => "room:v1"}} = Phoenix.join(socket, "room:v1")
      assert {:ok, %{"v" => 1}} = Phoenix.push(socket, "room:v1", "echo", %{v: 1})
      assert {:ok, %{}} = Phoenix.push(socket, "room:v1", "push_me", %{w: 2})
      assert {:ok, %{"w" => 2}} = Phoenix.await_message(socket, "room:v1", "pushed", 5000)

      assert {:error, {:binary_payload_needs_v2, :v1}} =
               Phoenix.push(socket, "room:v1", "echo", {:binary, "x"})
    end

    test "any JSON module with encode/1 and decode/1 (Jason's shape)", %{url: url} do
      socket = connect!(url, json: WsPort.Test.CountingJSON)
      assert {:ok, _} = Phoenix.join(socket, "room:j")

      assert {:ok, %{"via" => "custom"}} =
               Phoenix.push(socket, "room:j", "echo", %{via: "custom"})

      assert :persistent_term.get(WsPort.Test.CountingJSON) >= 4
    end

    test "OTP 27's json module: the envelope's nulls are the atom null", %{url: url} do
      # OTP 25 has no json module: a stand-in with OTP 27's contract
      # (encode/1 -> iodata, raising; decode/1 -> term; only the atom null
      # is JSON null, nil is the string "nil")
      unless Code.ensure_loaded?(:json) do
        defmodule :json do
          def encode(term), do: :ws_port_json.encode_to_binary(no_nil(term)) |> elem(1)
          def decode(bin), do: :ws_port_json.decode(bin) |> elem(1)
          defp no_nil(nil), do: "nil"
          defp no_nil(m) when is_map(m), do: Map.new(m, fn {k, v} -> {k, no_nil(v)} end)
          defp no_nil(l) when is_list(l), do: Enum.map(l, &no_nil/1)
          defp no_nil(x), do: x
        end
      end

      # the Elixir facade's null is nil; the envelope must still say null
      socket = connect!(url, json: :json, heartbeat_interval: 50)
      assert {:ok, _} = Phoenix.join(socket, "room:j")
      assert {:ok, %{"a" => :null}} = Phoenix.push(socket, "room:j", "echo", %{"a" => :null})
      # broadcasts and heartbeat replies carry null refs
      assert {:ok, %{}} = Phoenix.push(socket, "room:j", "shout", %{"b" => 1})
      assert {:ok, %{"b" => 1}} = Phoenix.await_message(socket, "room:j", "shout", 2000)
      Process.sleep(200)
      assert %{bad_input: 0, heartbeat_misses: 0} = Phoenix.info(socket).stats
    end

    test "the Erlang API decodes null as the atom null", %{url: url} do
      {:ok, socket} = :ws_port_phoenix.connect(url, %{params: %{token: "good"}})
      assert {:ok, _} = :ws_port_phoenix.join(socket, "room:a")

      assert {:ok, %{"a" => :null}} =
               :ws_port_phoenix.push(socket, "room:a", "echo", %{"a" => :null})

      :ok = :ws_port_phoenix.disconnect(socket)
    end
  end

  describe "rejoin" do
    # JOIN lines of the server for a topic: [{socket_id, params_json}]
    defp joins(peer, topic) do
      for line <- lines(peer, ~r/^JOIN \S+ #{topic} /) do
        [_, sid, _topic, _join_ref, params] = String.split(line, " ", parts: 5)
        {sid, params}
      end
    end

    test "after phx_error (the channel crashed), with its params", %{url: url, peer: peer} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:crash", %{"keep" => 1})

      # the push that crashed the channel gets no reply: it fails at once
      assert {:error, {:topic_closed, :crashed}} =
               Phoenix.push(socket, "room:crash", "crash", %{})

      # a push made while the topic waits to rejoin goes once it is joined
      assert {:ok, %{"after" => "crash"}} =
               Phoenix.push(socket, "room:crash", "echo", %{after: "crash"})

      assert [{sid, ~s({"keep":1})}, {sid, ~s({"keep":1})}] = joins(peer, "room:crash")
      assert %{rejoins: 1, reconnects: 0} = Phoenix.info(socket).stats

      # the server crashing every member's channel (no push of ours involved)
      assert "OK 1" = Peer.control(peer, "crash room:crash")
      wait_until(fn -> length(joins(peer, "room:crash")) == 3 end)
      wait_until(fn -> Phoenix.info(socket).topics == %{"room:crash" => :joined} end)
    end

    test "after phx_error with phoenix.js's default backoff (1 s)", %{url: url, peer: peer} do
      {:ok, socket} = Phoenix.connect(url, params: %{token: "good"})
      {:ok, _} = Phoenix.join(socket, "room:crash")
      {:error, {:topic_closed, :crashed}} = Phoenix.push(socket, "room:crash", "crash", %{})
      assert Phoenix.info(socket).topics == %{"room:crash" => :errored}
      assert {:ok, %{}} = Phoenix.push(socket, "room:crash", "echo", %{}, 5000)
      assert length(joins(peer, "room:crash")) == 2
      :ok = Phoenix.disconnect(socket)
    end

    test "a refused rejoin is reported and not retried", %{url: url, peer: peer} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:r")
      assert "OK" = Peer.control(peer, "refuse room:r")
      {:error, {:topic_closed, :crashed}} = Phoenix.push(socket, "room:r", "crash", %{})
      assert Peer.await_line(peer, "REFUSE ") =~ "room:r"
      wait_until(fn -> Phoenix.info(socket).topics == %{} end)
      assert {:error, {:not_joined, "room:r"}} = Phoenix.push(socket, "room:r", "echo", %{})
      Process.sleep(300)
      assert length(lines(peer, ~r/^REFUSE /)) == 1
    end

    test "after a dropped socket: every topic joined and not left, with its params",
         %{url: url, peer: peer} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:one", %{"n" => 1})
      {:ok, _} = Phoenix.join(socket, "room:two", %{"n" => 2})
      {:ok, _} = Phoenix.join(socket, "room:gone")
      :ok = Phoenix.leave(socket, "room:gone")

      # a push in flight when the socket drops gets no reply
      assert {:error, :disconnected} = Phoenix.push(socket, "room:one", "drop_socket", %{})
      # this one waits for the rejoin
      assert {:ok, %{"back" => true}} = Phoenix.push(socket, "room:two", "echo", %{back: true})

      # the peer logs each join as it reads it: room:one's rejoin may be
      # logged after room:two's reply reached us
      wait_until(fn -> length(joins(peer, "room:one")) == 2 end)
      assert [{s1, ~s({"n":1})}, {s2, ~s({"n":1})}] = joins(peer, "room:one")
      wait_until(fn -> length(joins(peer, "room:two")) == 2 end)
      assert [{^s1, ~s({"n":2})}, {^s2, ~s({"n":2})}] = joins(peer, "room:two")
      assert s1 != s2
      assert length(joins(peer, "room:gone")) == 1
      assert %{reconnects: 1} = Phoenix.info(socket).stats

      # a topic joined after the reconnect is rejoined after the next one
      {:ok, _} = Phoenix.join(socket, "room:late", %{"late" => true})
      assert "OK 1" = Peer.control(peer, "drop_all")
      wait_until(fn -> length(joins(peer, "room:late")) == 2 end)

      wait_until(fn ->
        Phoenix.info(socket).topics ==
          %{"room:one" => :joined, "room:two" => :joined, "room:late" => :joined}
      end)
    end

    test "after the server closes the socket (1000 and 1001)", %{url: url, peer: peer} do
      socket = connect!(url)
      {:ok, _} = Phoenix.join(socket, "room:close")

      for code <- [1001, 1000] do
        n = length(joins(peer, "room:close"))
        {:error, _} = Phoenix.push(socket, "room:close", "close_socket", %{code: code})
        wait_until(fn -> length(joins(peer, "room:close")) == n + 1 end)

        assert {:ok, %{"code" => ^code}} =
                 Phoenix.push(socket, "room:close", "echo", %{code: code})
      end
    end

    test "with retry: false a lost connection is final and calls say so", %{url: url} do
      socket = connect!(url, retry: false)
      {:ok, _} = Phoenix.join(socket, "room:c")
      {:error, _} = Phoenix.push(socket, "room:c", "close_socket", %{code: 1001})
      wait_until(fn -> match?(%{closed: {true, _}}, Phoenix.info(socket)) end)

      assert {:error, {:closed, {:remote, 1001, _}}} = Phoenix.push(socket, "room:c", "echo", %{})
      assert {:error, {:closed, _}} = Phoenix.join(socket, "room:d")
    end

    test "heartbeats are sent and answered; an unanswered one reconnects",
         %{url: url, peer: peer} do
      socket = connect!(url, heartbeat_interval: 50)
      {:ok, _} = Phoenix.join(socket, "room:hb")
      wait_until(fn -> length(lines(peer, ~r/^HEARTBEAT /)) >= 3 end)
      assert %{heartbeat_misses: 0, reconnects: 0} = Phoenix.info(socket).stats

      deaf = connect!(url, heartbeat_interval: 100, params: %{token: "good", heartbeat: "ignore"})
      {:ok, _} = Phoenix.join(deaf, "room:deaf")
      wait_until(fn -> length(joins(peer, "room:deaf")) == 2 end)
      assert %{heartbeat_misses: misses, reconnects: reconnects} = Phoenix.info(deaf).stats
      assert misses >= 1 and reconnects >= 1
    end
  end

  describe "examples/phoenix_client.exs (the issue's acceptance script)" do
    defp run_example(args) do
      script = Path.expand("../examples/phoenix_client.exs", __DIR__)
      old = System.argv()
      System.argv(args)

      try do
        ExUnit.CaptureIO.capture_io(fn -> Code.eval_file(script) end)
      after
        System.argv(old)
      end
    end

    test "over ws", %{url: url} do
      out = run_example([url])
      assert out =~ "broadcast seen: %{\"from\" => \"other socket\"}"
      assert out =~ "refused: %{\"reason\" => \"unauthorized\"}"
      assert out =~ "rejoined after a channel crash"
      assert out =~ "reconnected and rejoined"
      assert out =~ "done"
    end

    test "over wss with a CA file" do
      certs = Certs.make!()
      on_exit(fn -> Certs.cleanup(certs) end)
      peer = Peer.start!(:phoenix, tls: {certs.server.cert, certs.server.key})
      on_exit(fn -> Peer.stop(peer) end)

      out = run_example(["wss://localhost:#{Peer.port(peer)}/socket/websocket", certs.ca.cert])
      assert out =~ "connected to wss://"
      assert out =~ "done"
    end
  end

  describe "over wss" do
    test "with a CA file", _ do
      certs = Certs.make!()
      on_exit(fn -> Certs.cleanup(certs) end)
      peer = Peer.start!(:phoenix, tls: {certs.server.cert, certs.server.key})
      on_exit(fn -> Peer.stop(peer) end)
      url = "wss://localhost:#{Peer.port(peer)}/socket/websocket"

      socket = connect!(url, tls: [cacertfile: certs.ca.cert])
      assert {:ok, _} = Phoenix.join(socket, "room:tls")

      assert {:ok, %{"secure" => true}} =
               Phoenix.push(socket, "room:tls", "echo", %{secure: true})

      # and a server it cannot verify is refused
      assert {:error, {:tls, _}} = Phoenix.connect(url, params: %{token: "good"})
    end

    test "with the client certificate and an encrypted key in memory", _ do
      certs = Certs.make!()
      on_exit(fn -> Certs.cleanup(certs) end)

      peer =
        Peer.start!(:phoenix,
          tls: {certs.server.cert, certs.server.key},
          client_ca: certs.ca.cert
        )

      on_exit(fn -> Peer.stop(peer) end)
      url = "wss://localhost:#{Peer.port(peer)}/socket/websocket"
      enc = Path.join(certs.dir, "client_enc.pem")

      {_, 0} =
        System.cmd("openssl", [
          "pkcs8",
          "-topk8",
          "-v2",
          "aes-256-cbc",
          "-in",
          certs.client.key,
          "-out",
          enc,
          "-passout",
          "pass:phx-pw"
        ])

      tls = [
        cacertfile: certs.ca.cert,
        cert: File.read!(certs.client.cert),
        key: File.read!(enc),
        password: fn -> "phx-pw" end
      ]

      # the server requires a client certificate: joined means it took ours
      socket = connect!(url, tls: tls)
      assert {:ok, _} = Phoenix.join(socket, "room:mtls")

      assert {:error, {:tls, msg}} =
               Phoenix.connect(url,
                 params: %{token: "good"},
                 tls: Keyword.put(tls, :password, "x")
               )

      assert msg =~ "wrong password"
    end
  end
end
