%% @doc A synchronous Phoenix Channels client, for scripts, tests and
%% simple services (the Erlang face of `WsPort.Phoenix').
%% ```
%% {ok, S} = ws_port_phoenix:connect("ws://127.0.0.1:4000/socket/websocket",
%%                                   #{params => #{token => <<"T">>}}),
%% {ok, _} = ws_port_phoenix:join(S, <<"room:lobby">>, #{}),
%% {ok, Reply} = ws_port_phoenix:push(S, <<"room:lobby">>, <<"new_msg">>, #{body => <<"hi">>}),
%% {ok, Payload} = ws_port_phoenix:await_message(S, <<"room:lobby">>, <<"new_msg">>, 5000),
%% %% pushes in flight together, replies awaited later:
%% {ok, R1} = ws_port_phoenix:push_async(S, <<"room:lobby">>, <<"a">>, #{}),
%% {ok, R2} = ws_port_phoenix:push_async(S, <<"room:lobby">>, <<"b">>, #{}),
%% {ok, _} = ws_port_phoenix:await_reply(R1), {ok, _} = ws_port_phoenix:await_reply(R2),
%% ok = ws_port_phoenix:leave(S, <<"room:lobby">>),
%% ok = ws_port_phoenix:disconnect(S).
%% '''
%% The socket is a process linked to the caller that owns one {@link
%% ws_port} connection. {@link connect/2} returns once the first handshake
%% is done (a refused upgrade, such as HTTP 403 from a socket whose
%% `connect/3' refused the params, is `{error, {http_status, 403,
%% Headers}}'); afterwards the socket reconnects by itself with phoenix.js's
%% backoff (10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms, then 5 s, in
%% the port program), sends a heartbeat every `heartbeat_interval' and
%% reconnects when one goes unanswered until the next, rejoins every topic
%% joined and not left after each reconnect (with the same params), and
%% rejoins a topic whose channel crashed (`phx_error') after 1, 2, 5, then
%% 10 s. A refused join is returned and not retried.
%%
%% Payloads are JSON terms as {@link ws_port_json} decodes them (binary
%% keys, `null'; with the Elixir facade, `nil'), or `{binary, Bin}' for
%% Phoenix's binary frames (V2) both ways. Pushes made while a topic is
%% being (re)joined are sent once it is joined. Messages the server pushes
%% or broadcasts are kept in order until {@link await_message/4} takes
%% them; past `max_buffer' of them the socket stops reading (TCP pushes
%% back on the server) until some are taken.
%%
%% Errors name what was wrong: `{bad_topic, T}' (not a binary), `{bad_event,
%% E}', `{bad_timeout, T}' (not `infinity' nor an integer
%% 0..4294967295 ms), `{already_joined, Topic}', `{not_joined, Topic}', `timeout',
%% `disconnected' (the socket dropped before the reply came), `{topic_closed,
%% crashed | closed}' (the channel ended before it replied), `{closed,
%% Reason}' (the connection is gone for good; `{closed, noproc}' when the
%% socket process had ended already, e.g. after {@link disconnect/1}).
%%
%% == Options of connect/2 ==
%% A map or a proplist: those of {@link ws_port:connect/2} (`headers',
%% `tls', `retry', `retry_on', `connect_timeout', ...; `active' and
%% `await' are the socket's), plus:
%% <ul>
%% <li>`params': connect params, added to the URL's query string.</li>
%% <li>`heartbeat_interval': ms (default 30000; `infinity': none).</li>
%% <li>`json': the JSON codec, {@link ws_port_json} by default; OTP 27's
%%     `json', Jason, Poison or any module with `encode/1' and
%%     `decode/1'.</li>
%% <li>`serializer': `v2' (default) or `v1'; `vsn' is added to the URL
%%     unless it has one.</li>
%% <li>`null': the term for JSON null (default `null').</li>
%% <li>`rejoin_after': `fun((Try) -> Ms)' after phx_error (default 1, 2, 5,
%%     then 10 s).</li>
%% <li>`join_timeout': ms before a rejoin without an answer is tried again
%%     (default 10000).</li>
%% <li>`max_buffer': server messages kept for {@link await_message/4}
%%     before the socket stops reading (default 10000).</li>
%% </ul>
%% Without `retry' or `retry_fun', reconnection uses phoenix.js's backoff;
%% `retry_on' defaults to {@link ws_port_phoenix_conn:retry_on/0} (every
%% failure but refused upgrades and TLS failures, server closes included).
-module(ws_port_phoenix).

-behaviour(gen_server).

-export([connect/2, join/2, join/3, join/4, push/4, push/5, await_message/4, leave/2, leave/3]).
-export([push_async/4, push_async/5, await_reply/1, await_reply/2]).
-export([disconnect/1, info/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-export_type([socket/0, push_ref/0]).

-type socket() :: pid().

%% A push sent by {@link push_async/5}, for {@link await_reply/2}.
-opaque push_ref() :: {push_ref, gen_server:request_id()}.

%% What erlang:send_after/3 takes, or infinity.
-define(IS_TIMEOUT(T), (T =:= infinity orelse (is_integer(T) andalso T >= 0 andalso T =< 4294967295))).

-record(st, {
    conn :: ws_port_phoenix_conn:conn() | undefined,
    joins = #{} :: #{binary() => {gen_server:from(), reference()}},
    pushes = #{} :: #{binary() => {gen_server:from(), reference()}},
    leaves = #{} :: #{binary() => [gen_server:from()]},
    waiters = [] :: [{gen_server:from(), binary(), binary(), reference()}],
    buffer = queue:new() :: queue:queue({binary(), binary(), term()}),
    buffered = 0 :: non_neg_integer(),
    max_buffer = 10000 :: pos_integer(),
    closed = false :: false | {true, term()}
}).

%%====================================================================
%% API
%%====================================================================

%% @doc Connects to a Phoenix socket (`ws://host/socket/websocket' or
%% wss) and waits for the first handshake. See the module doc for `Opts'.
%% Options that are not a map or a proplist are `{error, {bad_option,
%% opts, Opts}}'; a `json' that is not a loadable module with `encode/1'
%% and `decode/1' is `{error, {bad_option, json, Json}}'.
-spec connect(ws_port:url(), map() | proplists:proplist()) -> {ok, socket()} | {error, term()}.
connect(Url, Opts) when is_list(Opts) ->
    %% as ws_port:connect/2: a bad entry or a name given twice is refused
    case ws_port_proto:options_map(Opts) of
        {ok, Map} -> connect(Url, Map);
        {error, _} = Error -> Error
    end;
connect(Url, Opts) when is_map(Opts) ->
    {ok, Pid} = gen_server:start_link(?MODULE, [], []),
    case gen_server:call(Pid, {connect, Url, Opts}, infinity) of
        ok ->
            {ok, Pid};
        {error, _} = Error ->
            %% the socket process ends normally; do not leave its EXIT behind
            unlink(Pid),
            receive
                {'EXIT', Pid, _} -> ok
            after 0 -> ok
            end,
            Error
    end;
connect(_Url, Opts) ->
    {error, {bad_option, opts, Opts}}.

%% @equiv join(Socket, Topic, #{}, 5000)
join(S, Topic) -> join(S, Topic, #{}, 5000).

%% @equiv join(Socket, Topic, Params, 5000)
join(S, Topic, Params) -> join(S, Topic, Params, 5000).

%% @doc Joins `Topic' with `Params': `{ok, Reply}' or `{error, Reply}' as
%% the channel's `join/3' answered, or `{error, timeout}' (the topic is
%% then left).
-spec join(socket(), binary(), term(), timeout()) -> {ok, term()} | {error, term()}.
join(_S, Topic, _Params, _Timeout) when not is_binary(Topic) ->
    {error, {bad_topic, Topic}};
join(_S, _Topic, _Params, Timeout) when not ?IS_TIMEOUT(Timeout) ->
    {error, {bad_timeout, Timeout}};
join(S, Topic, Params, Timeout) ->
    call(S, {join, Topic, Params, Timeout}).

%% @equiv push(Socket, Topic, Event, Payload, 5000)
push(S, Topic, Event, Payload) -> push(S, Topic, Event, Payload, 5000).

%% @doc Pushes `Event' with `Payload' to a joined topic and waits for the
%% reply: `{ok, Reply}', `{error, Reply}', `{error, timeout}' or another
%% error (module doc).
-spec push(socket(), binary(), binary(), term(), timeout()) -> {ok, term()} | {error, term()}.
push(_S, Topic, _Event, _Payload, _Timeout) when not is_binary(Topic) ->
    {error, {bad_topic, Topic}};
push(_S, _Topic, Event, _Payload, _Timeout) when not is_binary(Event) ->
    {error, {bad_event, Event}};
push(_S, _Topic, _Event, _Payload, Timeout) when not ?IS_TIMEOUT(Timeout) ->
    {error, {bad_timeout, Timeout}};
push(S, Topic, Event, Payload, Timeout) ->
    call(S, {push, Topic, Event, Payload, Timeout}).

%% @equiv push_async(Socket, Topic, Event, Payload, 5000)
push_async(S, Topic, Event, Payload) -> push_async(S, Topic, Event, Payload, 5000).

%% @doc Pushes `Event' with `Payload' to a joined topic without waiting:
%% `{ok, Ref}' at once, and {@link await_reply/2} with `Ref' (in the same
%% process) gives what {@link push/5} would have returned: `{ok, Reply}',
%% `{error, Reply}', `{error, timeout}' after `Timeout' ms without a reply,
%% or another error (module doc). Many pushes can be in flight, as with
%% phoenix.js's `channel.push(...).receive(...)'; they are sent in the
%% order of the calls. The reply comes to the caller as a message (as
%% with `gen_server:send_request/2'): a caller that never awaits it has it
%% in its mailbox.
-spec push_async(socket(), binary(), binary(), term(), timeout()) -> {ok, push_ref()} | {error, term()}.
push_async(_S, Topic, _Event, _Payload, _Timeout) when not is_binary(Topic) ->
    {error, {bad_topic, Topic}};
push_async(_S, _Topic, Event, _Payload, _Timeout) when not is_binary(Event) ->
    {error, {bad_event, Event}};
push_async(_S, _Topic, _Event, _Payload, Timeout) when not ?IS_TIMEOUT(Timeout) ->
    {error, {bad_timeout, Timeout}};
push_async(S, Topic, Event, Payload, Timeout) when is_pid(S) ->
    {ok, {push_ref, gen_server:send_request(S, {push, Topic, Event, Payload, Timeout})}};
push_async(S, _Topic, _Event, _Payload, _Timeout) ->
    {error, {bad_socket, S}}.

%% @equiv await_reply(Ref, infinity)
await_reply(Ref) -> await_reply(Ref, infinity).

%% @doc The reply to a {@link push_async/5}: `{ok, Reply}', `{error,
%% Reply}', `{error, timeout}' (the push's own timeout passed without a
%% reply), another error of {@link push/5}, or `{error, {closed,
%% Reason}}' when the socket process ended first. `Timeout' bounds this
%% wait (the push's timeout bounds it already): past it, `{error,
%% timeout}' and the reply, if it comes later, is dropped.
-spec await_reply(push_ref(), timeout()) -> {ok, term()} | {error, term()}.
await_reply(_Ref, Timeout) when not ?IS_TIMEOUT(Timeout) ->
    {error, {bad_timeout, Timeout}};
await_reply({push_ref, ReqId}, Timeout) ->
    case gen_server:receive_response(ReqId, Timeout) of
        {reply, Reply} -> Reply;
        timeout -> {error, timeout};
        {error, {Reason, _S}} -> {error, {closed, Reason}}
    end;
await_reply(Ref, _Timeout) ->
    {error, {bad_ref, Ref}}.

%% @doc Waits for the next message the server pushed or broadcast on
%% `Topic' with `Event' (messages are kept in the order they came; others
%% stay kept for later calls).
-spec await_message(socket(), binary(), binary(), timeout()) -> {ok, term()} | {error, term()}.
await_message(_S, Topic, _Event, _Timeout) when not is_binary(Topic) ->
    {error, {bad_topic, Topic}};
await_message(_S, _Topic, Event, _Timeout) when not is_binary(Event) ->
    {error, {bad_event, Event}};
await_message(_S, _Topic, _Event, Timeout) when not ?IS_TIMEOUT(Timeout) ->
    {error, {bad_timeout, Timeout}};
await_message(S, Topic, Event, Timeout) ->
    call(S, {await, Topic, Event, Timeout}).

%% @equiv leave(Socket, Topic, 5000)
leave(S, Topic) -> leave(S, Topic, 5000).

%% @doc Leaves `Topic' (it is not rejoined any more) and waits for the
%% server's answer (up to `Timeout' ms; `ok' either way once sent).
-spec leave(socket(), binary(), timeout()) -> ok | {error, term()}.
leave(_S, Topic, _Timeout) when not is_binary(Topic) ->
    {error, {bad_topic, Topic}};
leave(_S, _Topic, Timeout) when not ?IS_TIMEOUT(Timeout) ->
    {error, {bad_timeout, Timeout}};
leave(S, Topic, Timeout) ->
    call(S, {leave, Topic, Timeout}).

%% @doc Closes the socket (1000) and ends its process. `ok' also when it
%% has ended already (as {@link ws_port:close/1} of a closed connection).
-spec disconnect(socket()) -> ok.
disconnect(S) ->
    try
        gen_server:call(S, disconnect, infinity)
    catch
        exit:{noproc, _} -> ok;
        exit:{normal, _} -> ok;
        exit:{{nodedown, _}, _} -> ok
    end.

%% @doc `#{topics => #{Topic => State}, stats => #{...}, closed => ...,
%% buffered => ..., connection => Conn}' (`stats' of
%% {@link ws_port_phoenix_conn:stats/1}; `Conn' is the ws_port connection
%% underneath, for {@link ws_port:info/1}: compression, bytes, rtt).
-spec info(socket()) -> map().
info(S) ->
    gen_server:call(S, info, infinity).

%%====================================================================
%% gen_server
%%====================================================================

%% @private
init([]) ->
    {ok, #st{}}.

%% @private
handle_call({connect, Url, Opts}, _From, St) ->
    Max = maps:get(max_buffer, Opts, 10000),
    case is_integer(Max) andalso Max > 0 of
        false ->
            {stop, normal, {error, {bad_option, max_buffer, Max}}, St};
        true ->
            case ws_port_phoenix_conn:open(Url, maps:remove(max_buffer, Opts)) of
                {ok, Conn} -> {reply, ok, St#st{conn = Conn, max_buffer = Max}};
                {error, _} = Error -> {stop, normal, Error, St}
            end
    end;
handle_call(info, _From, #st{conn = Conn, closed = Closed} = St) ->
    {reply,
        #{
            topics => ws_port_phoenix_conn:topics(Conn),
            stats => ws_port_phoenix_conn:stats(Conn),
            connection => ws_port_phoenix_conn:ws(Conn),
            closed => Closed,
            buffered => St#st.buffered
        },
        St};
handle_call(disconnect, _From, #st{conn = Conn} = St) ->
    ok = ws_port_phoenix_conn:close(Conn),
    {stop, normal, ok, St};
handle_call({await, Topic, Event, Timeout}, From, St) ->
    case take(St#st.buffer, Topic, Event) of
        {ok, Payload, Buffer} ->
            {reply, {ok, Payload}, resume(St#st{buffer = Buffer, buffered = St#st.buffered - 1})};
        none ->
            TRef = timer_for(Timeout, {await_timeout, From}),
            {noreply, St#st{waiters = St#st.waiters ++ [{From, Topic, Event, TRef}]}}
    end;
handle_call(_Request, _From, #st{closed = {true, Reason}} = St) ->
    {reply, {error, {closed, Reason}}, St};
handle_call({join, Topic, Params, Timeout}, From, #st{conn = Conn} = St) ->
    case ws_port_phoenix_conn:join(Conn, Topic, Params) of
        {ok, Conn1} ->
            TRef = timer_for(Timeout, {join_timeout, Topic}),
            {noreply, St#st{conn = Conn1, joins = (St#st.joins)#{Topic => {From, TRef}}}};
        {error, _} = Error ->
            {reply, Error, St}
    end;
handle_call({push, Topic, Event, Payload, Timeout}, From, #st{conn = Conn} = St) ->
    case ws_port_phoenix_conn:push(Conn, Topic, Event, Payload) of
        {ok, Ref, Conn1} ->
            TRef = timer_for(Timeout, {push_timeout, Ref}),
            {noreply, St#st{conn = Conn1, pushes = (St#st.pushes)#{Ref => {From, TRef}}}};
        {error, _} = Error ->
            {reply, Error, St}
    end;
handle_call({leave, Topic, Timeout}, From, #st{conn = Conn} = St) ->
    case ws_port_phoenix_conn:leave(Conn, Topic) of
        {ok, Events, Conn1} ->
            St1 = fail_join(Topic, {error, left}, St#st{conn = Conn1}),
            _ = timer_for(Timeout, {leave_timeout, Topic, From}),
            Leaves = St1#st.leaves,
            St2 = St1#st{leaves = Leaves#{Topic => [From | maps:get(Topic, Leaves, [])]}},
            {noreply, events(Events, St2)};
        {error, _} = Error ->
            {reply, Error, St}
    end.

%% @private
handle_cast(_Msg, St) ->
    {noreply, St}.

%% @private
handle_info({?MODULE, {join_timeout, Topic}, TRef}, #st{joins = Joins} = St) ->
    case Joins of
        #{Topic := {From, TRef}} ->
            gen_server:reply(From, {error, timeout}),
            St1 = St#st{joins = maps:remove(Topic, Joins)},
            case ws_port_phoenix_conn:leave(St1#st.conn, Topic) of
                {ok, Events, Conn1} -> {noreply, events(Events, St1#st{conn = Conn1})};
                {error, _} -> {noreply, St1}
            end;
        _ ->
            {noreply, St}
    end;
handle_info({?MODULE, {push_timeout, Ref}, TRef}, #st{pushes = Pushes} = St) ->
    case Pushes of
        #{Ref := {From, TRef}} ->
            gen_server:reply(From, {error, timeout}),
            Conn = ws_port_phoenix_conn:forget(St#st.conn, Ref),
            {noreply, St#st{conn = Conn, pushes = maps:remove(Ref, Pushes)}};
        _ ->
            {noreply, St}
    end;
handle_info({?MODULE, {await_timeout, From}, TRef}, #st{waiters = Waiters} = St) ->
    case lists:keytake(TRef, 4, Waiters) of
        {value, {From, _, _, TRef}, Rest} ->
            gen_server:reply(From, {error, timeout}),
            {noreply, St#st{waiters = Rest}};
        false ->
            {noreply, St}
    end;
handle_info({?MODULE, {leave_timeout, Topic, From}, _TRef}, #st{leaves = Leaves} = St) ->
    Froms = maps:get(Topic, Leaves, []),
    case lists:member(From, Froms) of
        true ->
            gen_server:reply(From, ok),
            Conn = ws_port_phoenix_conn:forget_leaving(St#st.conn, Topic),
            {noreply, St#st{conn = Conn, leaves = maps:put(Topic, Froms -- [From], Leaves)}};
        false ->
            {noreply, St}
    end;
handle_info(Msg, #st{conn = undefined} = St) ->
    logger:debug("ws_port_phoenix: unexpected ~p", [Msg]),
    {noreply, St};
handle_info(Msg, #st{conn = Conn} = St) ->
    case ws_port_phoenix_conn:handle_info(Msg, Conn) of
        {ok, Events, Conn1} ->
            {noreply, events(Events, St#st{conn = Conn1})};
        unknown ->
            logger:debug("ws_port_phoenix: unexpected ~p", [Msg]),
            {noreply, St}
    end.

%% @private
terminate(_Reason, _St) ->
    ok.

%%====================================================================
%% Events of the engine
%%====================================================================

events(Events, St) ->
    lists:foldl(fun event/2, St, Events).

event({joined, Topic, Response, _Rejoin}, St) ->
    reply_join(Topic, {ok, Response}, St);
event({join_error, Topic, Response, Rejoin}, St) ->
    case Rejoin of
        true -> logger:warning("ws_port_phoenix: rejoining ~ts was refused: ~0p", [Topic, Response]);
        false -> ok
    end,
    reply_join(Topic, {error, Response}, St);
event({reply, Ref, _Topic, Status, Response}, St) ->
    reply_push(Ref, {Status, Response}, St);
event({push_error, Ref, _Topic, Why}, St) ->
    reply_push(Ref, {error, Why}, St);
event({message, Topic, Event, Payload}, St) ->
    deliver(Topic, Event, Payload, St);
event({left, Topic}, #st{leaves = Leaves} = St) ->
    _ = [gen_server:reply(From, ok) || From <- maps:get(Topic, Leaves, [])],
    St#st{leaves = maps:remove(Topic, Leaves)};
event({topic_closed, Topic, Reason}, St) ->
    logger:info("ws_port_phoenix: channel ~ts ~ts", [Topic, case Reason of crashed -> "crashed (phx_error), rejoining"; closed -> "closed by the server" end]),
    fail_join(Topic, {error, {topic_closed, Reason}}, St);
event({closed, Reason}, St) ->
    Err = {error, {closed, Reason}},
    _ = [gen_server:reply(From, Err) || {From, _} <- maps:values(St#st.joins)],
    _ = [gen_server:reply(From, Err) || {From, _} <- maps:values(St#st.pushes)],
    _ = [gen_server:reply(From, ok) || Froms <- maps:values(St#st.leaves), From <- Froms],
    St#st{joins = #{}, pushes = #{}, leaves = #{}, closed = {true, Reason}};
event(_Other, St) ->
    %% connected, disconnected, heartbeat_timeout: the engine acts on them
    St.

reply_join(Topic, Reply, #st{joins = Joins} = St) ->
    case Joins of
        #{Topic := {From, _}} ->
            gen_server:reply(From, Reply),
            St#st{joins = maps:remove(Topic, Joins)};
        _ ->
            St
    end.

fail_join(Topic, Reply, St) ->
    reply_join(Topic, Reply, St).

reply_push(Ref, Reply, #st{pushes = Pushes} = St) ->
    case Pushes of
        #{Ref := {From, _}} ->
            gen_server:reply(From, Reply),
            St#st{pushes = maps:remove(Ref, Pushes)};
        _ ->
            St
    end.

%% A waiter for this topic and event takes the message; else it is kept.
deliver(Topic, Event, Payload, #st{waiters = Waiters} = St) ->
    case lists:splitwith(fun({_, T, E, _}) -> not (T =:= Topic andalso E =:= Event) end, Waiters) of
        {Before, [{From, _, _, _} | After]} ->
            gen_server:reply(From, {ok, Payload}),
            St#st{waiters = Before ++ After};
        {_, []} ->
            N = St#st.buffered + 1,
            St1 = St#st{buffer = queue:in({Topic, Event, Payload}, St#st.buffer), buffered = N},
            case N >= St#st.max_buffer of
                true -> St1#st{conn = ws_port_phoenix_conn:pause(St1#st.conn, true)};
                false -> St1
            end
    end.

resume(#st{buffered = N, max_buffer = Max, conn = Conn} = St) when N < Max ->
    St#st{conn = ws_port_phoenix_conn:pause(Conn, false)};
resume(St) ->
    St.

take(Queue, Topic, Event) ->
    take(Queue, Topic, Event, queue:new()).

take(Queue, Topic, Event, Skipped) ->
    case queue:out(Queue) of
        {{value, {Topic, Event, Payload}}, Rest} -> {ok, Payload, queue:join(Skipped, Rest)};
        {{value, Other}, Rest} -> take(Rest, Topic, Event, queue:in(Other, Skipped));
        {empty, _} -> none
    end.

%% A call to the socket; one that has ended (or ends during the call) is
%% `{error, {closed, Why}}', as a push on a closed socket is.
call(S, Request) ->
    try
        gen_server:call(S, Request, infinity)
    catch
        exit:{Why, {gen_server, call, [S | _]}} -> {error, {closed, Why}}
    end.

timer_for(infinity, _What) ->
    make_ref();
timer_for(Ms, What) ->
    TRef = make_ref(),
    _ = erlang:send_after(Ms, self(), {?MODULE, What, TRef}),
    TRef.
