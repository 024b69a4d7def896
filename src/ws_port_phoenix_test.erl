%% @doc Test utilities for Phoenix client modules ({@link
%% ws_port_phoenix_client}), in the spirit of `Phoenix.ChannelTest' and
%% Slipstream's `SocketTest': the test process plays the server, so a
%% client module is tested with no server at all. (Elixir:
%% `WsPort.Phoenix.Test', which raises ExUnit assertion errors.)
%% ```
%% {ok, Client} = ws_port_phoenix_test:start_client(my_client, #{init_arg => Arg}),
%% ok = ws_port_phoenix_test:accept_connect(Client),
%% #{} = ws_port_phoenix_test:assert_join(Client, <<"room:1">>, '_', {ok, #{}}),
%% Ref = ws_port_phoenix_test:assert_push(Client, <<"room:1">>, <<"new_msg">>, '_'),
%% ok = ws_port_phoenix_test:reply(Client, <<"room:1">>, Ref, {ok, #{<<"id">> => 1}}),
%% ok = ws_port_phoenix_test:push(Client, <<"room:1">>, <<"event">>, #{}),
%% ok = ws_port_phoenix_test:refute_push(Client, <<"room:1">>, <<"new_msg">>, 100).
%% '''
%% The client runs with {@link ws_port_phoenix_test_transport} instead of
%% {@link ws_port}: what it sends comes to the test process (the one that
%% called {@link start_client/2}, which must make every call of this
%% module), decoded with the client's serializer; what the test sends is
%% encoded as the server would. Heartbeats are off unless
%% `heartbeat_interval' is given; heartbeats met while waiting for
%% something else are answered.
%%
%% Assertions raise `error({ws_port_phoenix_test, Message})', `Message' a
%% binary saying what was expected and what came. `'_'' as params or
%% payload matches anything; the value seen is returned.
-module(ws_port_phoenix_test).

-export([start_client/2, accept_connect/1, accept_connect/2]).
-export([assert_join/4, assert_join/5, assert_push/4, assert_push/5, refute_push/4]).
-export([assert_leave/2, assert_leave/3, reply/4, push/4, broadcast/4, next_push/4]).
-export([crash_channel/2, close_channel/2, disconnect/2, close/2]).

-define(KEY(Client), {?MODULE, Client}).
-define(WAIT, 1000).

-record(client, {
    conn :: ws_port_phoenix_test_transport:conn() | undefined,
    serializer :: ws_port_phoenix_proto:serializer(),
    json :: ws_port_phoenix_proto:json(),
    join_refs = #{} :: #{binary() => binary()}
}).

%%====================================================================
%% The client
%%====================================================================

%% @doc Starts a client of `Module' (linked to the caller) whose server is
%% the caller. `Opts' are those of {@link ws_port_phoenix_client:start_link/3}
%% (`url' may be left out; `serializer', `json' and `null' are used to
%% decode what it sends). Then {@link accept_connect/1} lets it connect.
-spec start_client(module(), map()) -> {ok, pid()} | {error, term()}.
start_client(Module, Opts) ->
    Null =
        case atom_to_binary(Module) of
            <<"Elixir.", _/binary>> -> maps:get(null, Opts, nil);
            _ -> maps:get(null, Opts, null)
        end,
    Url = maps:get(url, Opts, <<"ws://ws_port_phoenix_test/socket/websocket">>),
    ClientOpts = maps:merge(
        #{heartbeat_interval => infinity},
        (maps:remove(url, Opts))#{
            transport => ws_port_phoenix_test_transport,
            test_pid => self(),
            null => Null
        }
    ),
    case ws_port_phoenix_client:start_link(Module, Url, ClientOpts) of
        {ok, Pid} ->
            put(?KEY(Pid), #client{
                serializer = maps:get(serializer, Opts, v2),
                json = {maps:get(json, Opts, ws_port_json), Null}
            }),
            {ok, Pid};
        Other ->
            Other
    end.

%% @equiv accept_connect(Client, 1000)
accept_connect(Client) -> accept_connect(Client, ?WAIT).

%% @doc Waits for the client's connection (the first, or the next after
%% {@link disconnect/2}) and completes its handshake: the client runs
%% `handle_connect' and sends its joins.
-spec accept_connect(pid(), timeout()) -> ok.
accept_connect(Client, Timeout) ->
    C = client(Client),
    Conn =
        case C#client.conn of
            undefined ->
                receive
                    {ws_port_phoenix_test, connect, Conn0, Client, _Url} -> Conn0
                after Timeout -> fail("no connect from ~p within ~b ms", [Client, Timeout])
                end;
            Conn0 ->
                Conn0
        end,
    put(?KEY(Client), C#client{conn = Conn, join_refs = #{}}),
    Client ! {ws_port_up, Conn, #{status => 101, headers => [], protocol => <<>>}},
    ok.

%%====================================================================
%% What the client sends
%%====================================================================

%% @equiv assert_join(Client, Topic, Params, Reply, 1000)
assert_join(Client, Topic, Params, Reply) -> assert_join(Client, Topic, Params, Reply, ?WAIT).

%% @doc Waits for the client's join of `Topic' with `Params' (`'_'' for
%% any) and answers it with `Reply', `{ok, Response}' or `{error,
%% Response}' (then `handle_join/3' runs). Returns the params it sent.
-spec assert_join(pid(), binary(), term(), {ok | error, term()}, timeout()) -> term().
assert_join(Client, Topic, Params, {Status, Response}, Timeout) when Status =:= ok; Status =:= error ->
    Msg = expect(Client, Topic, <<"phx_join">>, Params, Timeout),
    #{ref := Ref, join_ref := JoinRef, payload := Sent} = Msg,
    C = client(Client),
    case Status of
        ok -> put(?KEY(Client), C#client{join_refs = (C#client.join_refs)#{Topic => JoinRef}});
        error -> ok
    end,
    send_reply(Client, JoinRef, Ref, Topic, Status, Response),
    Sent.

%% @equiv assert_push(Client, Topic, Event, Payload, 1000)
assert_push(Client, Topic, Event, Payload) -> assert_push(Client, Topic, Event, Payload, ?WAIT).

%% @doc Waits for the client's push of `Event' with `Payload' (`'_'' for
%% any) on `Topic'; returns its ref, for {@link reply/4}.
-spec assert_push(pid(), binary(), binary(), term(), timeout()) -> binary().
assert_push(Client, Topic, Event, Payload, Timeout) ->
    #{ref := Ref} = expect(Client, Topic, Event, Payload, Timeout),
    Ref.

%% @doc Waits for the client's push of `Event' on `Topic' (any payload);
%% returns `{Ref, Payload}' (for pattern assertions, e.g. Elixir's
%% `WsPort.Phoenix.Test.assert_push_match/5').
-spec next_push(pid(), binary(), binary(), timeout()) -> {binary(), term()}.
next_push(Client, Topic, Event, Timeout) ->
    #{ref := Ref, payload := Payload} = expect(Client, Topic, Event, '_', Timeout),
    {Ref, Payload}.

%% @doc Fails if the client pushes `Event' on `Topic' within `Timeout' ms.
%% Other frames seen meanwhile are kept for later assertions.
-spec refute_push(pid(), binary(), binary(), timeout()) -> ok.
refute_push(Client, Topic, Event, Timeout) ->
    Conn = conn(Client),
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    refute_loop(Client, Conn, Topic, Event, Deadline, []).

refute_loop(Client, Conn, Topic, Event, Deadline, Kept) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {ws_port_phoenix_test, frame, Conn, Frame} = Raw ->
            case decode(Client, Frame) of
                #{topic := Topic, event := Event, payload := P} ->
                    requeue(Kept),
                    fail("expected no push of ~ts on ~ts, got one with ~0p", [Event, Topic, P]);
                _ ->
                    refute_loop(Client, Conn, Topic, Event, Deadline, [Raw | Kept])
            end
    after Left ->
        requeue(Kept)
    end.

%% @equiv assert_leave(Client, Topic, 1000)
assert_leave(Client, Topic) -> assert_leave(Client, Topic, ?WAIT).

%% @doc Waits for the client's leave of `Topic' and answers it (ok, then
%% phx_close, as Phoenix does).
-spec assert_leave(pid(), binary(), timeout()) -> ok.
assert_leave(Client, Topic, Timeout) ->
    #{ref := Ref, join_ref := JoinRef} = expect(Client, Topic, <<"phx_leave">>, '_', Timeout),
    send_reply(Client, JoinRef, Ref, Topic, ok, #{}),
    send_msg(Client, JoinRef, JoinRef, Topic, <<"phx_close">>, #{}),
    forget_topic(Client, Topic).

%% Waits for the next frame of the client that is not a heartbeat
%% (answered on the way) and checks it.
expect(Client, Topic, Event, Payload, Timeout) ->
    Conn = conn(Client),
    receive
        {ws_port_phoenix_test, frame, Conn, Frame} ->
            case decode(Client, Frame) of
                #{topic := <<"phoenix">>, event := <<"heartbeat">>, ref := Ref} ->
                    send_reply(Client, undefined, Ref, <<"phoenix">>, ok, #{}),
                    expect(Client, Topic, Event, Payload, Timeout);
                #{topic := Topic, event := Event, payload := P} = Msg when Payload =:= '_'; P =:= Payload ->
                    Msg;
                #{topic := T, event := E, payload := P} ->
                    fail("expected ~ts on ~ts with ~0p, got ~ts on ~ts with ~0p", [
                        Event, Topic, Payload, E, T, P
                    ])
            end
    after Timeout ->
        fail("expected ~ts on ~ts within ~b ms, got nothing", [Event, Topic, Timeout])
    end.

%%====================================================================
%% What the server sends
%%====================================================================

%% @doc Answers the push `Ref' on `Topic' with `{ok, Response}' or `{error,
%% Response}' (then `handle_reply/3' runs).
-spec reply(pid(), binary(), binary(), {ok | error, term()}) -> ok.
reply(Client, Topic, Ref, {Status, Response}) when Status =:= ok; Status =:= error ->
    send_reply(Client, join_ref(Client, Topic), Ref, Topic, Status, Response).

%% @doc A push from the channel on `Topic' (then `handle_message/4').
-spec push(pid(), binary(), binary(), term()) -> ok.
push(Client, Topic, Event, Payload) ->
    send_msg(Client, join_ref(Client, Topic), undefined, Topic, Event, Payload).

%% @doc A broadcast on `Topic' (no join_ref, as Phoenix's fastlane).
-spec broadcast(pid(), binary(), binary(), term()) -> ok.
broadcast(Client, Topic, Event, Payload) ->
    send_msg(Client, undefined, undefined, Topic, Event, Payload).

%% @doc The channel of `Topic' crashed: phx_error (the client rejoins it:
%% expect {@link assert_join/4} again).
-spec crash_channel(pid(), binary()) -> ok.
crash_channel(Client, Topic) ->
    JoinRef = join_ref(Client, Topic),
    send_msg(Client, JoinRef, JoinRef, Topic, <<"phx_error">>, #{}),
    forget_topic(Client, Topic).

%% @doc The server closed the channel of `Topic': phx_close.
-spec close_channel(pid(), binary()) -> ok.
close_channel(Client, Topic) ->
    JoinRef = join_ref(Client, Topic),
    send_msg(Client, JoinRef, JoinRef, Topic, <<"phx_close">>, #{}),
    forget_topic(Client, Topic).

%% @doc The connection dropped (`Reason', e.g. `econnreset'); the client
%% waits to be reconnected: {@link accept_connect/1} again, then its
%% rejoins.
-spec disconnect(pid(), term()) -> ok.
disconnect(Client, Reason) ->
    Conn = conn(Client),
    Client ! {ws_port_down, Conn, Reason, #{attempt => 1, delay_ms => 10, unsent_bytes => 0}},
    C = client(Client),
    put(?KEY(Client), C#client{join_refs = #{}}),
    ok.

%% @doc The connection ended for good (`Reason'): the client exits with
%% `{closed, Reason}'.
-spec close(pid(), term()) -> ok.
close(Client, Reason) ->
    Client ! {ws_port_closed, conn(Client), Reason},
    ok.

%%====================================================================
%% Helpers
%%====================================================================

client(Client) ->
    case get(?KEY(Client)) of
        undefined -> fail("~p was not started by ws_port_phoenix_test:start_client/2 in this process", [Client]);
        C -> C
    end.

conn(Client) ->
    case client(Client) of
        #client{conn = undefined} -> fail("~p has not connected: call accept_connect first", [Client]);
        #client{conn = Conn} -> Conn
    end.

join_ref(Client, Topic) ->
    case client(Client) of
        #client{join_refs = #{Topic := JoinRef}} -> JoinRef;
        _ -> fail("~ts is not joined (assert_join with {ok, _} first)", [Topic])
    end.

forget_topic(Client, Topic) ->
    C = client(Client),
    put(?KEY(Client), C#client{join_refs = maps:remove(Topic, C#client.join_refs)}),
    ok.

decode(Client, Frame) ->
    #client{serializer = S, json = J} = client(Client),
    case ws_port_phoenix_proto:decode(S, J, Frame) of
        {ok, Msg} -> Msg;
        {error, Why} -> fail("the client sent a frame that is not a Phoenix message: ~0p", [Why])
    end.

send_reply(Client, JoinRef, Ref, Topic, Status, {binary, _} = Response) ->
    %% a binary reply frame, as Phoenix's V2 serializer sends it
    StatusBin = atom_to_binary(Status),
    {binary, Data} = Response,
    Parts = [bin(JoinRef), bin(Ref), Topic, StatusBin],
    Frame = {binary, iolist_to_binary([1, [byte_size(P) || P <- Parts], Parts, Data])},
    Client ! {ws_port, conn(Client), Frame},
    ok;
send_reply(Client, JoinRef, Ref, Topic, Status, Response) ->
    Payload = #{<<"status">> => atom_to_binary(Status), <<"response">> => Response},
    send_msg(Client, JoinRef, Ref, Topic, <<"phx_reply">>, Payload).

send_msg(Client, JoinRef, _Ref, Topic, Event, {binary, Data}) ->
    Frame =
        case JoinRef of
            undefined ->
                {binary, <<2, (byte_size(Topic)), (byte_size(Event)), Topic/binary, Event/binary, Data/binary>>};
            _ ->
                {binary, <<0, (byte_size(JoinRef)), (byte_size(Topic)), (byte_size(Event)), JoinRef/binary,
                           Topic/binary, Event/binary, Data/binary>>}
        end,
    Client ! {ws_port, conn(Client), Frame},
    ok;
send_msg(Client, JoinRef, Ref, Topic, Event, Payload) ->
    #client{serializer = S, json = J} = client(Client),
    Msg = #{join_ref => JoinRef, ref => Ref, topic => Topic, event => Event, payload => Payload},
    {ok, {text, Text}} = ws_port_phoenix_proto:encode(S, J, Msg),
    Client ! {ws_port, conn(Client), {text, iolist_to_binary(Text)}},
    ok.

bin(undefined) -> <<>>;
bin(B) -> B.

requeue(Kept) ->
    %% put back, in order, what was taken while looking
    _ = [self() ! Msg || Msg <- lists:reverse(Kept)],
    ok.

-spec fail(string(), list()) -> no_return().
fail(Format, Args) ->
    erlang:error({?MODULE, iolist_to_binary(io_lib:format(Format, Args))}).
