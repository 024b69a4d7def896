%% @doc The Phoenix Channels protocol engine over one {@link ws_port}
%% connection, run inside the process that owns the connection
%% ({@link ws_port_phoenix}'s socket process). It keeps the topics joined
%% and rejoins them, routes replies by ref, answers for heartbeats, and
%% turns what arrives into events for the layer above; it sends nothing to
%% anyone but the port and its own process (timers).
%%
%% The owning process gives it every message that is not its own
%% (`handle_info/2' answers `unknown' for those) and gets back a list of
%% events, in order:
%% <ul>
%% <li>`{connected, Info}', `{disconnected, Reason, Info}' (reconnecting),
%%     `{closed, Reason}' (for good).</li>
%% <li>`{joined, Topic, Response, Rejoin}' (Rejoin: after a reconnect or a
%%     channel crash), `{join_error, Topic, Response, Rejoin}' (refused:
%%     the topic is forgotten).</li>
%% <li>`{reply, Ref, Topic, ok | error, Response}' for a push;
%%     `{push_error, Ref, Topic, Why}' when the push cannot be answered any
%%     more (`disconnected', `{topic_closed, Reason}', `closed').</li>
%% <li>`{message, Topic, Event, Payload}': a push or broadcast from the
%%     server.</li>
%% <li>`{topic_closed, Topic, Reason}': `closed' (phx_close from the
%%     server, the topic is forgotten) or `crashed' (phx_error: it will be
%%     rejoined).</li>
%% <li>`{left, Topic}': the server answered our phx_leave.</li>
%% <li>`{join_timeout, Topic, Rejoin}': no answer to a join within
%%     `join_timeout' (10 s): the join is left and tried again after
%%     `rejoin_after', as phoenix.js does.</li>
%% <li>`{heartbeat_timeout, Ms}': no heartbeat reply within an interval;
%%     the connection is being dropped and reopened.</li>
%% </ul>
%% Topics and their params are kept until left or refused, and joined again
%% after every reconnect (`ws_port_up') with the same params and a new
%% join_ref. After phx_error a topic is rejoined after `rejoin_after'
%% (phoenix.js's 1, 2, 5 s, then 10 s). Pushes to a topic that is
%% (re)joining are kept and sent once it is joined, as phoenix.js does.
%%
%% Bad input from the server (a frame that is not Phoenix's, JSON that does
%% not parse, a reply for an unknown ref, a message for a topic not
%% joined) is counted (`bad_input' in {@link stats/1}, telemetry `[ws_port,
%% phoenix, bad_input]'), logged once per kind at warning level (the
%% following ones at debug), and dropped.
%%
%% == Telemetry ==
%% Through {@link ws_port_telemetry} (when the telemetry library is
%% present; the README's Telemetry section has every event of ws_port in one
%% table). Durations are in native time units; every event's metadata but
%% `message''s has `url' (without its query string, which may carry a token).
%% <ul>
%% <li>`[ws_port, phoenix, connect, start]' `#{system_time}', metadata
%%     `serializer'; `[ws_port, phoenix, connect, stop]' `#{duration}' (from
%%     the connect, or from the loss of the connection for a reconnect),
%%     metadata `result' (`ok' or `{error, Reason}'), `reconnect'.</li>
%% <li>`[ws_port, phoenix, join, start]' `#{system_time}', metadata
%%     `topic', `rejoin'; `[ws_port, phoenix, join, stop]' `#{duration}',
%%     metadata `topic', `rejoin', `result' (`ok' | `error').</li>
%% <li>`[ws_port, phoenix, push, start]' `#{system_time}', metadata
%%     `topic', `event'; `[ws_port, phoenix, push, stop]' `#{duration}' (to
%%     the reply), metadata `topic', `event', `result' (`ok' | `error').</li>
%% <li>`[ws_port, phoenix, heartbeat]' `#{rtt_us}': a heartbeat's reply.</li>
%% <li>`[ws_port, phoenix, heartbeat_timeout]' `#{count => 1}'.</li>
%% <li>`[ws_port, phoenix, bad_input]' `#{count => 1}', metadata `kind'
%%     (`bad_frame', `bad_reply', `unknown_ref', `not_joined').</li>
%% <li>`[ws_port, phoenix, message]' `#{duration}' (of `handle_message/4'),
%%     metadata `topic', `event', `module': emitted by {@link
%%     ws_port_phoenix_client}.</li>
%% </ul>
-module(ws_port_phoenix_conn).

-export([open/2, check/2, join/3, push/4, leave/2, forget/2, forget_leaving/2, close/1, handle_info/2]).
-export([pause/2, stats/1, ws/1, topics/1, retry_on/0, reconnect_after/1, rejoin_after/1]).
-export([phoenix_backoff/1]).

-export_type([conn/0, event/0]).

-define(WINDOW, 100).
%% The options of open/2 that are not ws_port:connect/2's.
-define(OWN_OPTS, [
    params, heartbeat_interval, json, null, serializer, rejoin_after, join_timeout, window, transport, connect_async
]).

-record(topic, {
    state :: joining | joined | errored | waiting | leaving,
    params :: term(),
    join_ref :: binary() | undefined,
    tries = 0 :: non_neg_integer(),
    rejoin = false :: boolean(),
    timer :: reference() | undefined,
    buffer = [] :: [{binary(), binary(), term()}],
    started :: integer() | undefined
}).

-record(conn, {
    ws :: term(),
    transport = ws_port :: module(),
    ever_up = true :: boolean(),
    url :: binary(),
    serializer :: ws_port_phoenix_proto:serializer(),
    json :: ws_port_phoenix_proto:json(),
    status = connected :: connected | disconnected | closed,
    ref = 0 :: non_neg_integer(),
    topics = #{} :: #{binary() => #topic{}},
    %% ref => {join, Topic, JoinRef} | {push, Topic} | {leave, Topic} | heartbeat
    pending = #{} :: #{binary() => term()},
    hb_interval :: pos_integer() | infinity,
    hb_ref :: binary() | undefined,
    hb_timer :: reference() | undefined,
    hb_sent :: integer() | undefined,
    %% ref => {Topic, Event, start time} of pushes awaiting a reply
    started = #{} :: #{binary() => {binary(), binary(), integer()}},
    down_at :: integer() | undefined,
    rejoin_after :: fun((pos_integer()) -> non_neg_integer()),
    join_timeout = 10000 :: pos_integer(),
    window = ?WINDOW :: pos_integer(),
    paused = false :: boolean(),
    passive = false :: boolean(),
    stats = #{bad_input => 0, heartbeat_misses => 0, rejoins => 0, reconnects => 0} :: map(),
    logged = [] :: [atom()]
}).

-opaque conn() :: #conn{}.
-type event() :: tuple().

%%====================================================================
%% Policies
%%====================================================================

%% @doc The failure classes after which the port program reconnects a
%% Phoenix socket: ws_port's `stay_connected' policy, the one of every
%% long-lived layer: everything but refused upgrades (4xx other than 429)
%% and TLS failures, and every close by the server (Phoenix closes with
%% 1000 or 1001 when it restarts, and the client must come back) except
%% those answering a protocol error of ours (1002, 1003, 1007, 1009:
%% {@link ws_port_retry:our_close_codes/0}).
-spec retry_on() -> [ws_port_retry:retry_on_entry()].
retry_on() ->
    ws_port_retry:retry_on(stay_connected).

%% @doc phoenix.js's reconnect backoff: the delay (ms) before attempt N.
-spec reconnect_after(pos_integer()) -> pos_integer().
reconnect_after(N) ->
    Delays = {10, 50, 100, 150, 200, 250, 500, 1000, 2000},
    case N =< tuple_size(Delays) of
        true -> element(N, Delays);
        false -> 5000
    end.

%% @doc phoenix.js's rejoin backoff after phx_error: the delay (ms) before
%% rejoin N.
-spec rejoin_after(pos_integer()) -> pos_integer().
rejoin_after(1) -> 1000;
rejoin_after(2) -> 2000;
rejoin_after(3) -> 5000;
rejoin_after(_) -> 10000.

%%====================================================================
%% Opening and closing
%%====================================================================

%% @doc Opens the socket and waits for the first handshake. `Opts' (a map):
%% those of {@link ws_port:connect/2} plus `params', `heartbeat_interval'
%% (ms, default 30000, `infinity' for none), `json' (a codec module,
%% default {@link ws_port_json}), `null' (the term for JSON null, default
%% `null'), `serializer' (`v2', default, or `v1'), `rejoin_after' (a fun
%% from the try number to ms), `join_timeout' (ms before an unanswered join
%% is tried again, default 10000), `window' (credit, default 100),
%% `connect_async' (true: return at once; the first handshake is a
%% `connected' event and its failures are retried like later ones) and
%% `transport' (a module with ws_port's `connect/2', `send/2',
%% `setopts/2', `reconnect/2' and `close/1'; {@link ws_port} by default,
%% the test utilities give their own).
%% Reconnection is phoenix.js's backoff unless `retry' or `retry_fun' is
%% given; `retry_on' defaults to {@link retry_on/0}.
-spec open(ws_port:url(), map()) -> {ok, conn()} | {error, term()}.
open(Url0, Opts0) ->
    Own = ?OWN_OPTS,
    Serializer = maps:get(serializer, Opts0, v2),
    case check_opts(Opts0, Serializer) of
        ok ->
            case ws_port_phoenix_proto:socket_url(Url0, maps:get(params, Opts0, #{}), Serializer) of
                {ok, Url} -> open_url(Url, Serializer, Opts0, maps:without(Own, Opts0));
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc Checks what {@link open/2} would be given, without connecting:
%% `ok', or the error `open/2' would return for a bad option or URL.
-spec check(ws_port:url(), map()) -> ok | {error, term()}.
check(Url0, Opts0) ->
    Serializer = maps:get(serializer, Opts0, v2),
    case check_opts(Opts0, Serializer) of
        ok ->
            case ws_port_phoenix_proto:socket_url(Url0, maps:get(params, Opts0, #{}), Serializer) of
                {ok, Url} ->
                    case ws_port_proto:normalize_url(Url) of
                        {ok, _} -> check_ws_opts(Opts0);
                        {error, _} = Error -> Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% ws_port's options (another transport, the test utilities', has its own)
check_ws_opts(#{transport := Transport}) when Transport =/= ws_port ->
    ok;
check_ws_opts(Opts) ->
    case ws_port_proto:normalize_connect_opts(ws_opts(Opts, maps:without(?OWN_OPTS, Opts))) of
        {ok, _} -> ok;
        {error, _} = Error -> Error
    end.

check_opts(Opts, Serializer) ->
    Checks = [
        {serializer, Serializer =:= v1 orelse Serializer =:= v2},
        {heartbeat_interval, check(heartbeat_interval, Opts, fun
            (infinity) -> true;
            (I) -> is_integer(I) andalso I > 0
        end)},
        {json, check(json, Opts, fun is_json_codec/1)},
        {rejoin_after, check(rejoin_after, Opts, fun(F) -> is_function(F, 1) end)},
        {window, check(window, Opts, fun(W) -> is_integer(W) andalso W > 0 end)},
        {join_timeout, check(join_timeout, Opts, fun(W) -> is_integer(W) andalso W > 0 end)},
        {transport, check(transport, Opts, fun is_atom/1)},
        {connect_async, check(connect_async, Opts, fun is_boolean/1)},
        {active, not maps:is_key(active, Opts)},
        {await, not maps:is_key(await, Opts)}
    ],
    case [Name || {Name, false} <- Checks] of
        [] -> ok;
        [Name | _] -> {error, {bad_option, Name, maps:get(Name, Opts, Serializer)}}
    end.

%% A module with encode/1 and decode/1 (loaded now: a name misspelled or
%% not in the code path is refused here, not at every join and push).
is_json_codec(ws_port_json) ->
    true;
is_json_codec(Mod) when is_atom(Mod) ->
    code:ensure_loaded(Mod) =:= {module, Mod} andalso
        erlang:function_exported(Mod, encode, 1) andalso
        erlang:function_exported(Mod, decode, 1);
is_json_codec(_) ->
    false.

check(Key, Opts, Pred) ->
    case Opts of
        #{Key := V} -> Pred(V);
        _ -> true
    end.

%% The options of ws_port:connect/2: those given (WsOpts0), phoenix.js's
%% backoff unless retry or retry_fun is given, retry_on, the credit.
ws_opts(Opts, WsOpts0) ->
    Window = maps:get(window, Opts, ?WINDOW),
    Retry =
        case maps:is_key(retry, WsOpts0) orelse maps:is_key(retry_fun, WsOpts0) of
            true ->
                #{};
            false ->
                %% an external fun: it outlives a reload of this module
                #{retry_fun => fun ?MODULE:phoenix_backoff/1, retry_state => #{tries => 0, delay => 10}}
        end,
    Async = maps:get(connect_async, Opts, false),
    maps:merge(
        maps:merge(#{retry_on => retry_on()}, Retry),
        WsOpts0#{active => Window, await => not Async}
    ).

open_url(Url, Serializer, Opts, WsOpts0) ->
    Json = {maps:get(json, Opts, ws_port_json), maps:get(null, Opts, null)},
    Window = maps:get(window, Opts, ?WINDOW),
    Async = maps:get(connect_async, Opts, false),
    WsOpts = ws_opts(Opts, WsOpts0),
    Transport = maps:get(transport, Opts, ws_port),
    Meta = #{url => without_query(Url), serializer => Serializer},
    T0 = erlang:monotonic_time(),
    telemetry([connect, start], #{system_time => erlang:system_time()}, Meta),
    Connected = Transport:connect(Url, WsOpts),
    case Async of
        true ->
            ok;
        false ->
            telemetry([connect, stop], #{duration => erlang:monotonic_time() - T0}, Meta#{
                result => result(Connected), reconnect => false
            })
    end,
    case Connected of
        {ok, Ws} ->
            C = #conn{
                ws = Ws,
                transport = Transport,
                ever_up = not Async,
                status = case Async of true -> disconnected; false -> connected end,
                down_at = T0,
                url = without_query(Url),
                serializer = Serializer,
                json = Json,
                hb_interval = maps:get(heartbeat_interval, Opts, 30000),
                rejoin_after = maps:get(rejoin_after, Opts, fun rejoin_after/1),
                join_timeout = maps:get(join_timeout, Opts, 10000),
                window = Window
            },
            case Async of
                true -> {ok, C};
                false -> {ok, start_heartbeat(C)}
            end;
        {error, _} = Error ->
            Error
    end.

result({ok, _}) -> ok;
result({error, Reason}) -> {error, Reason}.

telemetry(Event, Measurements, Meta) ->
    ws_port_telemetry:execute([ws_port, phoenix | Event], Measurements, Meta).

%% For logs and telemetry: the query may carry a token.
without_query(Url) ->
    hd(binary:split(Url, <<"?">>)).

%% @private The retry_fun given to ws_port (runs in the driver): phoenix.js's
%% delays.
phoenix_backoff(#{tries := T} = S) ->
    S#{tries => T + 1, delay => reconnect_after(T + 1)}.

%% @doc Closes the socket (1000); the conn is of no use afterwards.
-spec close(conn()) -> ok.
close(#conn{ws = Ws, transport = Tr} = C) ->
    cancel_timers(C),
    _ = Tr:close(Ws),
    ok.

%% @doc The underlying connection.
-spec ws(conn()) -> term().
ws(#conn{ws = Ws}) -> Ws.

%% @doc Counters: `bad_input', `heartbeat_misses', `rejoins',
%% `reconnects'.
-spec stats(conn()) -> map().
stats(#conn{stats = S}) -> S.

%% @doc The topics and their state (`joining', `joined', `errored'
%% (waiting to rejoin after phx_error), `waiting' (for the connection),
%% `leaving').
-spec topics(conn()) -> #{binary() => atom()}.
topics(#conn{topics = T}) ->
    maps:map(fun(_, #topic{state = S}) -> S end, T).

%% @doc Stops (true) or resumes (false) reading the socket: the layer above
%% has as many messages as it wants to hold. While paused, heartbeat
%% replies cannot arrive, so missed heartbeats are not counted.
-spec pause(conn(), boolean()) -> conn().
pause(C, true) ->
    C#conn{paused = true};
pause(#conn{paused = true, passive = true, ws = Ws, window = W, transport = Tr} = C, false) ->
    _ = Tr:setopts(Ws, [{active, W}]),
    C#conn{paused = false, passive = false};
pause(C, false) ->
    C#conn{paused = false}.

%%====================================================================
%% Joining, pushing, leaving
%%====================================================================

%% @doc Joins `Topic' with `Params' (sent now, or at the next handshake).
%% The answer is a `joined' or `join_error' event. Params the JSON codec
%% cannot encode are its error (`{error, {unsupported, Term}}' with
%% {@link ws_port_json}), and the topic is not joined.
-spec join(conn(), binary(), term()) -> {ok, conn()} | {error, term()}.
join(_C, Topic, _Params) when not is_binary(Topic) ->
    {error, {bad_topic, Topic}};
join(#conn{status = closed}, _Topic, _Params) ->
    {error, closed};
join(#conn{topics = Topics} = C, Topic, Params) ->
    case Topics of
        #{Topic := _} ->
            {error, {already_joined, Topic}};
        _ ->
            %% params that cannot be encoded are refused now, as a push's
            %% payload is: sent later they would fail at every (re)join
            Msg = #{
                join_ref => <<>>, ref => <<>>, topic => Topic, event => <<"phx_join">>, payload => Params
            },
            case encode(C, Msg) of
                {ok, _} ->
                    T = #topic{state = waiting, params = Params},
                    {ok, send_join(C#conn{topics = Topics#{Topic => T}}, Topic)};
                {error, _} = Error ->
                    Error
            end
    end.

%% @doc Pushes `Event' with `Payload' (a JSON term or `{binary, Bin}') to a
%% topic joined or being joined; returns the ref its reply will carry.
-spec push(conn(), binary(), binary(), term()) -> {ok, binary(), conn()} | {error, term()}.
push(_C, Topic, _Event, _Payload) when not is_binary(Topic) ->
    {error, {bad_topic, Topic}};
push(_C, _Topic, Event, _Payload) when not is_binary(Event) ->
    {error, {bad_event, Event}};
push(#conn{status = closed}, _Topic, _Event, _Payload) ->
    {error, closed};
push(#conn{topics = Topics} = C, Topic, Event, Payload) ->
    case Topics of
        #{Topic := #topic{state = joined, join_ref = JoinRef}} ->
            {Ref, C1} = next_ref(C),
            Msg = #{join_ref => JoinRef, ref => Ref, topic => Topic, event => Event, payload => Payload},
            case encode(C1, Msg) of
                {ok, Frame} ->
                    _ = (C1#conn.transport):send(C1#conn.ws, Frame),
                    {ok, Ref, push_started(add_pending(C1, Ref, {push, Topic}), Ref, Topic, Event)};
                {error, _} = Error ->
                    Error
            end;
        #{Topic := #topic{state = leaving}} ->
            {error, {not_joined, Topic}};
        #{Topic := #topic{buffer = Buf} = T} ->
            %% checked now, sent once joined
            case encode(C, #{join_ref => <<>>, ref => <<>>, topic => Topic, event => Event, payload => Payload}) of
                {ok, _} ->
                    {Ref, C1} = next_ref(C),
                    T1 = T#topic{buffer = [{Ref, Event, Payload} | Buf]},
                    C2 = add_pending(C1#conn{topics = Topics#{Topic := T1}}, Ref, {push, Topic}),
                    {ok, Ref, push_started(C2, Ref, Topic, Event)};
                {error, _} = Error ->
                    Error
            end;
        _ ->
            {error, {not_joined, Topic}}
    end.

%% @doc Leaves `Topic': phx_leave is sent if it is joined, and the topic is
%% forgotten at once (not rejoined). A `left' event follows the server's
%% answer.
-spec leave(conn(), binary()) -> {ok, [event()], conn()} | {error, term()}.
leave(_C, Topic) when not is_binary(Topic) ->
    {error, {bad_topic, Topic}};
leave(#conn{topics = Topics} = C, Topic) ->
    case Topics of
        #{Topic := #topic{state = leaving}} ->
            {error, {not_joined, Topic}};
        #{Topic := #topic{state = State, join_ref = JoinRef, timer = Timer, buffer = Buf}} ->
            cancel(Timer),
            Failed = [{push_error, Ref, Topic, left} || {Ref, _, _} <- lists:reverse(Buf)],
            C1 = drop_pending(C, [Ref || {Ref, _, _} <- Buf]),
            case (State =:= joined orelse State =:= joining) andalso C#conn.status =:= connected of
                true ->
                    {Ref, C2} = next_ref(C1),
                    send_msg(C2, JoinRef, Ref, Topic, <<"phx_leave">>, #{}),
                    T = #topic{state = leaving, params = undefined, join_ref = JoinRef},
                    C3 = add_pending(C2#conn{topics = Topics#{Topic := T}}, Ref, {leave, Topic}),
                    {ok, Failed, C3};
                false ->
                    {ok, Failed ++ [{left, Topic}], C1#conn{topics = maps:remove(Topic, Topics)}}
            end;
        _ ->
            {error, {not_joined, Topic}}
    end.

%% @doc Forgets a topic being left whose phx_leave got no answer.
-spec forget_leaving(conn(), binary()) -> conn().
forget_leaving(#conn{topics = Topics} = C, Topic) ->
    case Topics of
        #{Topic := #topic{state = leaving}} -> C#conn{topics = maps:remove(Topic, Topics)};
        _ -> C
    end.

%% @doc Forgets a push's ref (its caller stopped waiting).
-spec forget(conn(), binary()) -> conn().
forget(#conn{pending = P, started = S} = C, Ref) ->
    C#conn{pending = maps:remove(Ref, P), started = maps:remove(Ref, S)}.

%%====================================================================
%% Incoming
%%====================================================================

%% @doc Handles a message of the owning process: the connection's, or one
%% of the engine's timers. `unknown' for any other.
-spec handle_info(term(), conn()) -> {ok, [event()], conn()} | unknown.
handle_info({ws_port, Ws, Frame}, #conn{ws = Ws} = C) ->
    case decode(C, Frame) of
        {ok, Msg} ->
            {Events, C1} = incoming(Msg, C),
            {ok, Events, C1};
        {error, Why} ->
            {ok, [], bad_input(C, bad_frame, Why)}
    end;
handle_info({ws_port_passive, Ws}, #conn{ws = Ws, paused = true} = C) ->
    {ok, [], C#conn{passive = true}};
handle_info({ws_port_passive, Ws}, #conn{ws = Ws, window = W, transport = Tr} = C) ->
    _ = Tr:setopts(Ws, [{active, W}]),
    {ok, [], C};
handle_info({ws_port_up, Ws, Info}, #conn{ws = Ws, topics = Topics} = C0) ->
    Since = case C0#conn.down_at of undefined -> erlang:monotonic_time(); T -> T end,
    telemetry([connect, stop], #{duration => erlang:monotonic_time() - Since}, #{
        url => C0#conn.url, serializer => C0#conn.serializer, result => ok, reconnect => C0#conn.ever_up
    }),
    C1 = start_heartbeat(C0#conn{status = connected, hb_ref = undefined}),
    Stats = C1#conn.stats,
    C2 =
        case C1#conn.ever_up of
            true -> C1#conn{stats = Stats#{reconnects := maps:get(reconnects, Stats) + 1}};
            false -> C1#conn{ever_up = true}
        end,
    C3 = lists:foldl(
        fun(Topic, Acc) -> send_join(Acc, Topic) end,
        C2,
        lists:sort([Tp || {Tp, #topic{state = S}} <- maps:to_list(Topics), S =/= leaving])
    ),
    {ok, [{connected, Info}], C3};
handle_info({ws_port_down, Ws, Reason, Info}, #conn{ws = Ws} = C) ->
    {Events, C1} = connection_lost(C),
    Down =
        case C#conn.status of
            connected -> erlang:monotonic_time();
            _ -> C#conn.down_at
        end,
    {ok, Events ++ [{disconnected, Reason, Info}], C1#conn{status = disconnected, down_at = Down}};
handle_info({ws_port_closed, Ws, Reason}, #conn{ws = Ws} = C) ->
    {Events, C1} = connection_lost(C),
    Closed = [{push_error, Ref, Topic, closed} || {Ref, Topic, _, _} <- buffered(C1)],
    {ok, Events ++ Closed ++ [{closed, Reason}], C1#conn{status = closed, topics = #{}}};
handle_info({ws_port_error, Ws, _}, #conn{ws = Ws} = C) ->
    %% a send refused while the connection is down: ws_port_down follows
    {ok, [], C};
handle_info({ws_port_pong, Ws, _}, #conn{ws = Ws} = C) ->
    {ok, [], C};
handle_info({?MODULE, heartbeat, Timer}, #conn{hb_timer = Timer} = C) ->
    heartbeat(C#conn{hb_timer = undefined});
handle_info({?MODULE, rejoin, Topic, Timer}, #conn{topics = Topics} = C) ->
    case Topics of
        #{Topic := #topic{state = errored, timer = Timer} = T} ->
            Stats = C#conn.stats,
            C1 = C#conn{
                topics = Topics#{Topic := T#topic{timer = undefined}},
                stats = Stats#{rejoins := maps:get(rejoins, Stats) + 1}
            },
            {ok, [], send_join(C1, Topic)};
        _ ->
            {ok, [], C}
    end;
handle_info({?MODULE, join_timeout, Topic, JoinRef}, #conn{topics = Topics} = C) ->
    case Topics of
        #{Topic := #topic{state = joining, join_ref = JoinRef, rejoin = Rejoin} = T} ->
            %% as phoenix.js: leave that join and try again later
            {Ref, C1} = next_ref(C),
            send_msg(C1, JoinRef, Ref, Topic, <<"phx_leave">>, #{}),
            C2 = add_pending(C1#conn{pending = maps:remove(JoinRef, C1#conn.pending)}, Ref, ignore),
            N = T#topic.tries + 1,
            Timer = make_ref(),
            _ = erlang:send_after((C#conn.rejoin_after)(N), self(), {?MODULE, rejoin, Topic, Timer}),
            T1 = T#topic{state = errored, tries = N, timer = Timer, rejoin = true},
            {ok, [{join_timeout, Topic, Rejoin}], C2#conn{topics = Topics#{Topic := T1}}};
        _ ->
            {ok, [], C}
    end;
handle_info({?MODULE, _, _}, C) ->
    {ok, [], C};
handle_info({?MODULE, _, _, _}, C) ->
    {ok, [], C};
handle_info(_, _C) ->
    unknown.

incoming(#{topic := <<"phoenix">>, event := <<"phx_reply">>, ref := Ref}, #conn{hb_ref = Ref} = C) when
    Ref =/= undefined
->
    Rtt = erlang:convert_time_unit(erlang:monotonic_time() - C#conn.hb_sent, native, microsecond),
    telemetry([heartbeat], #{rtt_us => Rtt}, #{url => C#conn.url}),
    {[], C#conn{hb_ref = undefined}};
incoming(#{event := <<"phx_reply">>, ref := Ref, payload := Payload} = Msg, #conn{pending = P} = C) ->
    case {P, Payload} of
        {#{Ref := What}, #{<<"status">> := Status, <<"response">> := Response}} when
            Status =:= <<"ok">>; Status =:= <<"error">>
        ->
            reply(What, Ref, binary_to_atom(Status), Response, C#conn{pending = maps:remove(Ref, P)});
        {#{Ref := _}, _} ->
            {[], bad_input(C, bad_reply, Msg)};
        _ ->
            {[], bad_input(C, unknown_ref, Msg)}
    end;
incoming(#{event := Event, topic := Topic, join_ref := JoinRef}, #conn{topics = Topics} = C) when
    Event =:= <<"phx_error">>; Event =:= <<"phx_close">>
->
    %% V1 carries no join_ref: then the topic's current channel is meant
    case Topics of
        #{Topic := #topic{join_ref = Current, state = leaving}} when
            JoinRef =:= Current; JoinRef =:= undefined
        ->
            {[{left, Topic}], C#conn{topics = maps:remove(Topic, Topics)}};
        #{Topic := #topic{join_ref = Current} = T} when JoinRef =:= Current; JoinRef =:= undefined ->
            channel_exit(Event, Topic, T, C);
        _ ->
            %% an old channel's end (stale join_ref): nothing of ours
            {[], C}
    end;
incoming(#{topic := Topic, event := Event, join_ref := JoinRef, payload := Payload} = Msg, C) ->
    case C#conn.topics of
        #{Topic := #topic{state = joined, join_ref = Current}} when
            JoinRef =:= undefined; JoinRef =:= Current
        ->
            {[{message, Topic, Event, Payload}], C};
        #{Topic := #topic{state = S}} when S =/= joined ->
            %% a broadcast that raced our leave or crash
            {[], C};
        _ ->
            {[], bad_input(C, not_joined, Msg)}
    end.

reply({join, Topic, JoinRef}, _Ref, Status, Response, #conn{topics = Topics} = C) ->
    case Topics of
        #{Topic := #topic{join_ref = JoinRef, started = T0, rejoin = Re}} when is_integer(T0) ->
            telemetry([join, stop], #{duration => erlang:monotonic_time() - T0}, #{
                url => C#conn.url, topic => Topic, rejoin => Re, result => Status
            });
        _ ->
            ok
    end,
    case Topics of
        #{Topic := #topic{state = joining, join_ref = JoinRef, rejoin = Rejoin} = T} when Status =:= ok ->
            T1 = T#topic{state = joined, tries = 0, buffer = []},
            C1 = C#conn{topics = Topics#{Topic := T1}},
            {Failed, C2} = flush_buffer(C1, Topic, JoinRef, lists:reverse(T#topic.buffer)),
            {[{joined, Topic, Response, Rejoin} | Failed], C2};
        #{Topic := #topic{state = joining, join_ref = JoinRef, rejoin = Rejoin, buffer = Buf}} ->
            Failed = [{push_error, Ref, Topic, {join_error, Response}} || {Ref, _, _} <- lists:reverse(Buf)],
            C1 = drop_pending(C#conn{topics = maps:remove(Topic, Topics)}, [R || {R, _, _} <- Buf]),
            {[{join_error, Topic, Response, Rejoin} | Failed], C1};
        _ ->
            {[], C}
    end;
reply({push, Topic}, Ref, Status, Response, #conn{started = Started} = C) ->
    case Started of
        #{Ref := {_, Event, T0}} ->
            telemetry([push, stop], #{duration => erlang:monotonic_time() - T0}, #{
                url => C#conn.url, topic => Topic, event => Event, result => Status
            });
        _ ->
            ok
    end,
    {[{reply, Ref, Topic, Status, Response}], C#conn{started = maps:remove(Ref, Started)}};
reply({leave, Topic}, _Ref, _Status, _Response, #conn{topics = Topics} = C) ->
    case Topics of
        #{Topic := #topic{state = leaving}} ->
            {[{left, Topic}], C#conn{topics = maps:remove(Topic, Topics)}};
        _ ->
            {[], C}
    end;
reply(ignore, _Ref, _Status, _Response, C) ->
    {[], C}.

flush_buffer(C, Topic, JoinRef, Buffered) ->
    lists:foldl(
        fun({Ref, Event, Payload}, {Failed, Acc}) ->
            Msg = #{join_ref => JoinRef, ref => Ref, topic => Topic, event => Event, payload => Payload},
            case encode(Acc, Msg) of
                {ok, Frame} ->
                    _ = (Acc#conn.transport):send(Acc#conn.ws, Frame),
                    {Failed, Acc};
                {error, Why} ->
                    {Failed ++ [{push_error, Ref, Topic, Why}], forget(Acc, Ref)}
            end
        end,
        {[], C},
        Buffered
    ).

%% phx_error: the channel crashed, rejoin it later; phx_close: the server
%% ended it, forget it.
channel_exit(<<"phx_error">>, Topic, #topic{tries = Tries} = T, #conn{topics = Topics} = C) ->
    {Failed, C1} = fail_pushes(C, Topic, {topic_closed, crashed}),
    N = Tries + 1,
    Timer = make_ref(),
    _ = erlang:send_after((C#conn.rejoin_after)(N), self(), {?MODULE, rejoin, Topic, Timer}),
    T1 = T#topic{state = errored, tries = N, timer = Timer, rejoin = true},
    {Failed ++ [{topic_closed, Topic, crashed}], C1#conn{topics = Topics#{Topic := T1}}};
channel_exit(<<"phx_close">>, Topic, #topic{timer = Timer, buffer = Buf}, #conn{topics = Topics} = C) ->
    cancel(Timer),
    {Failed, C1} = fail_pushes(C, Topic, {topic_closed, closed}),
    Unsent = [{push_error, Ref, Topic, {topic_closed, closed}} || {Ref, _, _} <- lists:reverse(Buf)],
    C2 = drop_pending(C1, [Ref || {Ref, _, _} <- Buf]),
    {Failed ++ Unsent ++ [{topic_closed, Topic, closed}], C2#conn{topics = maps:remove(Topic, Topics)}}.

%% Pushes sent on a topic whose channel is gone will get no reply.
fail_pushes(#conn{pending = P} = C, Topic, Why) ->
    Refs = lists:sort([Ref || {Ref, {push, T}} <- maps:to_list(P), T =:= Topic]),
    Buffered = [Ref || {Ref, T, _, _} <- buffered(C), T =:= Topic],
    Sent = Refs -- Buffered,
    {[{push_error, Ref, Topic, Why} || Ref <- Sent], drop_pending(C#conn{pending = P}, Sent)}.

%% The socket is gone: replies in flight are lost; every topic waits for
%% the next handshake.
connection_lost(#conn{pending = P, topics = Topics} = C) ->
    cancel_timers(C),
    Buffered = [Ref || {Ref, _, _, _} <- buffered(C)],
    Lost = lists:sort([{Ref, T} || {Ref, {push, T}} <- maps:to_list(P), not lists:member(Ref, Buffered)]),
    Events = [{push_error, Ref, T, disconnected} || {Ref, T} <- Lost],
    Topics1 = maps:fold(
        fun
            (_Tp, #topic{state = leaving}, Acc) ->
                Acc;
            (Tp, T, Acc) ->
                Acc#{Tp => T#topic{state = waiting, timer = undefined, rejoin = true, tries = 0}}
        end,
        #{},
        Topics
    ),
    Left = [{left, Tp} || {Tp, #topic{state = leaving}} <- maps:to_list(Topics)],
    Pending = maps:with(Buffered, P),
    Started = maps:with(Buffered, C#conn.started),
    {Events ++ Left, C#conn{
        pending = Pending, started = Started, topics = Topics1, hb_ref = undefined, hb_timer = undefined
    }}.

buffered(#conn{topics = Topics}) ->
    [{Ref, Tp, E, Pl} || {Tp, #topic{buffer = Buf}} <- maps:to_list(Topics), {Ref, E, Pl} <- Buf].

%%====================================================================
%% Heartbeat
%%====================================================================

start_heartbeat(#conn{hb_interval = infinity} = C) ->
    C;
start_heartbeat(#conn{hb_interval = I} = C) ->
    Timer = make_ref(),
    _ = erlang:send_after(I, self(), {?MODULE, heartbeat, Timer}),
    C#conn{hb_timer = Timer}.

heartbeat(#conn{status = connected, hb_ref = undefined} = C) ->
    {Ref, C1} = next_ref(C),
    send_msg(C1, undefined, Ref, <<"phoenix">>, <<"heartbeat">>, #{}),
    C2 = start_heartbeat(C1),
    {ok, [], C2#conn{hb_ref = Ref, hb_sent = erlang:monotonic_time()}};
heartbeat(#conn{status = connected, paused = true} = C) ->
    %% the reply may be behind what we are not reading: wait
    {ok, [], start_heartbeat(C)};
heartbeat(#conn{status = connected, ws = Ws, hb_interval = I, stats = Stats} = C) ->
    logger:notice("ws_port_phoenix: no heartbeat reply within ~b ms from ~ts, reconnecting", [
        I, C#conn.url
    ]),
    ws_port_telemetry:execute([ws_port, phoenix, heartbeat_timeout], #{count => 1}, #{url => C#conn.url}),
    _ = (C#conn.transport):reconnect(Ws, reconnect_after(1)),
    C1 = C#conn{stats = Stats#{heartbeat_misses := maps:get(heartbeat_misses, Stats) + 1}},
    {ok, [{heartbeat_timeout, I}], C1#conn{hb_ref = undefined}};
heartbeat(C) ->
    {ok, [], C}.

%%====================================================================
%% Helpers
%%====================================================================

send_join(#conn{status = connected, topics = Topics} = C, Topic) ->
    #{Topic := #topic{params = Params} = T} = Topics,
    {Ref, C1} = next_ref(C),
    send_msg(C1, Ref, Ref, Topic, <<"phx_join">>, Params),
    telemetry([join, start], #{system_time => erlang:system_time()}, #{
        url => C#conn.url, topic => Topic, rejoin => T#topic.rejoin
    }),
    T1 = T#topic{state = joining, join_ref = Ref, started = erlang:monotonic_time()},
    _ = erlang:send_after(C#conn.join_timeout, self(), {?MODULE, join_timeout, Topic, Ref}),
    add_pending(C1#conn{topics = Topics#{Topic := T1}}, Ref, {join, Topic, Ref});
send_join(C, _Topic) ->
    C.

send_msg(C, JoinRef, Ref, Topic, Event, Payload) ->
    Msg = #{join_ref => JoinRef, ref => Ref, topic => Topic, event => Event, payload => Payload},
    case encode(C, Msg) of
        {ok, Frame} ->
            _ = (C#conn.transport):send(C#conn.ws, Frame),
            ok;
        {error, Why} ->
            logger:warning("ws_port_phoenix: cannot encode ~ts on ~ts: ~p", [Event, Topic, Why]),
            ok
    end.

encode(#conn{serializer = S, json = J}, Msg) ->
    ws_port_phoenix_proto:encode(S, J, Msg).

decode(#conn{serializer = S, json = J}, Frame) ->
    ws_port_phoenix_proto:decode(S, J, Frame).

next_ref(#conn{ref = N} = C) ->
    {integer_to_binary(N + 1), C#conn{ref = N + 1}}.

add_pending(#conn{pending = P} = C, Ref, What) ->
    C#conn{pending = P#{Ref => What}}.

push_started(#conn{started = S} = C, Ref, Topic, Event) ->
    telemetry([push, start], #{system_time => erlang:system_time()}, #{
        url => C#conn.url, topic => Topic, event => Event
    }),
    C#conn{started = S#{Ref => {Topic, Event, erlang:monotonic_time()}}}.

drop_pending(#conn{pending = P, started = S} = C, Refs) ->
    C#conn{pending = maps:without(Refs, P), started = maps:without(Refs, S)}.

bad_input(#conn{stats = Stats, logged = Logged, url = Url} = C, Kind, Detail) ->
    case lists:member(Kind, Logged) of
        false ->
            logger:warning("ws_port_phoenix: ~ts from ~ts (logged once, then counted): ~0p", [
                describe(Kind), Url, Detail
            ]);
        true ->
            logger:debug("ws_port_phoenix: ~ts: ~0p", [describe(Kind), Detail])
    end,
    ws_port_telemetry:execute([ws_port, phoenix, bad_input], #{count => 1}, #{kind => Kind, url => Url}),
    C#conn{
        stats = Stats#{bad_input := maps:get(bad_input, Stats) + 1},
        logged = lists:usort([Kind | Logged])
    }.

describe(bad_frame) -> "a frame that is not a Phoenix message";
describe(bad_reply) -> "a phx_reply without status and response";
describe(unknown_ref) -> "a reply for an unknown ref";
describe(not_joined) -> "a message for a topic not joined".

%% Timers are not cancelled: each carries a ref, and one whose ref is no
%% longer the current one is ignored when it fires.
cancel_timers(_C) -> ok.

cancel(_Timer) -> ok.
