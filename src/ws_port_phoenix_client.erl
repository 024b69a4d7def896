%% @doc A Phoenix Channels client as a process with callbacks, GenServer
%% style (the Erlang behaviour behind `use WsPort.Phoenix.Client').
%%
%% The process owns one Phoenix socket ({@link ws_port_phoenix_conn} on a
%% {@link ws_port} connection): it connects in the background, reconnects
%% with phoenix.js's backoff, answers heartbeats, and rejoins by itself every
%% topic joined and not left, after a reconnect and after a channel crash
%% (`phx_error'); the module only says what to join and what to do with
%% what arrives. Credit is managed as in {@link ws_port_client}: at most
%% `window' messages (default 100) are ever delivered and not yet handled,
%% so a slow `handle_message/4' slows the server down through TCP.
%%
%% == Callbacks ==
%% All are optional (defaults: do nothing, keep the state).
%% <ul>
%% <li>`init(Arg) -> {ok, State} | {stop, Reason} | ignore'. The socket
%%     exists already: {@link join/2} here joins once connected.</li>
%% <li>`handle_connect(State)': after every handshake.</li>
%% <li>`handle_disconnect(Reason, State)': the connection was lost and is
%%     being reopened (`{ok, State}' lets it; `{stop, Reason, State}'
%%     stops). When it is gone for good (a refused upgrade, retries run
%%     out) the process then exits with `{closed, Reason}'.</li>
%% <li>`handle_join(Topic, {ok, Reply} | {error, Reply}, State)': the answer
%%     to a join or rejoin. A refused topic is forgotten (not retried).
%%     `{error, timeout}': no answer within `join_timeout' (10 s); the join
%%     is tried again after `rejoin_after', as phoenix.js does.</li>
%% <li>`handle_message(Topic, Event, Payload, State)': a push or broadcast
%%     from the server.</li>
%% <li>`handle_reply(Ref, {ok, Reply} | {error, Reply}, State)': the reply
%%     to {@link push/3}; `{error, disconnected | {topic_closed, crashed |
%%     closed} | left | closed}' when none can come any more.</li>
%% <li>`handle_topic_close(Topic, crashed | closed, State)': the channel
%%     crashed (it is rejoined after 1, 2, 5, then 10 s) or the server
%%     closed it (it is forgotten).</li>
%% <li>`handle_leave(Topic, State)': a leave is done.</li>
%% <li>`handle_info/2', `handle_cast/2', `handle_call/3', `terminate/2': as
%%     gen_server.</li>
%% </ul>
%% Callbacks return `{ok, State}' (or `{noreply, State}') or `{stop,
%% Reason, State}'; `handle_call/3' as gen_server's.
%%
%% From inside any callback: {@link join/2}, {@link push/3} (returns the
%% ref of the coming `handle_reply/3'), {@link leave/1}. Their effects
%% (events for the other callbacks) come after the callback returns.
%%
%% == Options of start_link/3 ==
%% Those of {@link ws_port_phoenix:connect/2} (`params', `heartbeat_interval',
%% `json', `serializer', `headers', `tls', `retry', ...), plus `name',
%% `init_arg' (default `[]'), `window' (default 100). JSON null is `null',
%% or `nil' for an Elixir module, unless `null' is given.
%%
%% Under {@link ws_port_client_sup}: `ws_port_client_sup:start_client(Url,
%% #{module => Module, ...})'; in your own tree: {@link child_spec/1}.
-module(ws_port_phoenix_client).

-behaviour(gen_server).

-export([start_link/3, start/3, child_spec/1, is_client_module/1]).
-export([join/1, join/2, push/3, leave/1]).
-export([call/2, call/3, cast/2, stop/1, info/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-callback init(Arg :: term()) -> {ok, State :: term()} | {stop, Reason :: term()} | ignore.
-callback handle_connect(State :: term()) -> callback_result().
-callback handle_disconnect(Reason :: term(), State :: term()) -> callback_result().
-callback handle_join(Topic :: binary(), {ok, term()} | {error, term()}, State :: term()) ->
    callback_result().
-callback handle_message(Topic :: binary(), Event :: binary(), Payload :: term(), State :: term()) ->
    callback_result().
-callback handle_reply(Ref :: binary(), {ok, term()} | {error, term()}, State :: term()) ->
    callback_result().
-callback handle_topic_close(Topic :: binary(), crashed | closed, State :: term()) -> callback_result().
-callback handle_leave(Topic :: binary(), State :: term()) -> callback_result().
-callback handle_info(Msg :: term(), State :: term()) -> callback_result().
-callback handle_cast(Msg :: term(), State :: term()) -> callback_result().
-callback handle_call(Request :: term(), From :: gen_server:from(), State :: term()) ->
    {reply, term(), term()} | {noreply, term()} | {stop, term(), term(), term()} | {stop, term(), term()}.
-callback terminate(Reason :: term(), State :: term()) -> term().

-optional_callbacks([
    init/1,
    handle_connect/1,
    handle_disconnect/2,
    handle_join/3,
    handle_message/4,
    handle_reply/3,
    handle_topic_close/3,
    handle_leave/2,
    handle_info/2,
    handle_cast/2,
    handle_call/3,
    terminate/2
]).

-type callback_result() :: {ok, term()} | {noreply, term()} | {stop, term(), term()}.

-define(CONN, '$ws_port_phoenix_conn').
-define(EVENTS, '$ws_port_phoenix_events').
-define(OWN, [name, init_arg]).

-record(st, {mod :: module(), state :: term(), conn :: ws_port_phoenix_conn:conn()}).

%%====================================================================
%% Starting
%%====================================================================

%% @doc Starts a client of `Module' on the Phoenix socket at `Url'
%% (`ws://host/socket/websocket'), linked to the caller. Returns once
%% `init/1' ran; the connection is made in the background. The options,
%% the URL, the module and the name are checked before a process starts
%% (error returns, not exit signals to the caller): `{error, {bad_option,
%% Name, Value}}', `{error, {invalid_url, Detail}}', `{error, {bad_module,
%% Module, Why}}'.
-spec start_link(module(), ws_port:url(), map() | proplists:proplist()) -> gen_server:start_ret().
start_link(Module, Url, Opts) ->
    start(link, Module, Url, to_map(Opts)).

%% @doc As {@link start_link/3}, not linked.
-spec start(module(), ws_port:url(), map() | proplists:proplist()) -> gen_server:start_ret().
start(Module, Url, Opts) ->
    start(nolink, Module, Url, to_map(Opts)).

start(_Link, _Module, _Url, {error, _} = Error) ->
    Error;
start(Link, Module, Url, Opts) ->
    %% checked by the caller: a bad option, URL, module or name is an error
    %% return, not an exit signal through the link (init/1's stop)
    case check_start(Module, Url, Opts) of
        ok ->
            Args = {Module, Url, Opts},
            case {Link, maps:get(name, Opts, undefined)} of
                {link, undefined} -> gen_server:start_link(?MODULE, Args, []);
                {nolink, undefined} -> gen_server:start(?MODULE, Args, []);
                {link, Name} -> gen_server:start_link(name(Name), ?MODULE, Args, []);
                {nolink, Name} -> gen_server:start(name(Name), ?MODULE, Args, [])
            end;
        {error, _} = Error ->
            Error
    end.

check_start(Module, Url, Opts) ->
    Loaded = is_atom(Module) andalso code:ensure_loaded(Module),
    case {Loaded, maps:get(name, Opts, undefined)} of
        {false, _} ->
            {error, {bad_module, Module, not_an_atom}};
        {{error, What}, _} ->
            {error, {bad_module, Module, What}};
        {{module, _}, Name} ->
            case is_name(Name) of
                true -> ws_port_phoenix_conn:check(Url, conn_opts(Module, Opts));
                false -> {error, {bad_option, name, Name}}
            end
    end.

%% What gen_server:start_link/4 takes (an atom: {local, Atom}).
is_name(Name) when is_atom(Name) -> true;
is_name({local, Name}) -> is_atom(Name);
is_name({global, _}) -> true;
is_name({via, Mod, _}) -> is_atom(Mod);
is_name(_) -> false.

name(Name) when is_atom(Name) -> {local, Name};
name(Name) -> Name.

%% a map, or {error, {bad_option, ...}} (start/4 returns it)
to_map(Opts) ->
    case ws_port_proto:options_map(Opts) of
        {ok, Map} -> Map;
        {error, _} = Error -> Error
    end.

%% What the socket is opened with: an Elixir module gets nil for JSON null,
%% as Jason gives.
conn_opts(Module, Opts) ->
    Null =
        case atom_to_binary(Module) of
            <<"Elixir.", _/binary>> -> nil;
            _ -> null
        end,
    ConnOpts = maps:merge(#{null => Null}, maps:without(?OWN, Opts)),
    ConnOpts#{connect_async => true}.

%% @doc A child spec: `#{module := Module, url := Url, id => Id, ...
%% options}' (or a proplist of the same), `restart => transient'. Without
%% `module' and `url' it raises `badarg' naming the argument.
-spec child_spec(map() | proplists:proplist()) -> supervisor:child_spec().
child_spec(Opts) when is_list(Opts) ->
    case ws_port_proto:options_map(Opts) of
        {ok, Map} -> child_spec(Map);
        {error, _} -> bad_child_spec(Opts)
    end;
child_spec(#{module := Module, url := Url} = Opts) ->
    #{
        id => maps:get(id, Opts, Module),
        %% the secrets (tls key and password, proxy, header values) as funs:
        %% the supervisor keeps the arguments and prints them in its reports
        start =>
            {?MODULE, start_link, [Module, Url, ws_port_proto:conceal(maps:without([id, module, url], Opts))]},
        restart => transient,
        shutdown => 5000,
        type => worker,
        modules => [?MODULE, Module]
    };
child_spec(Opts) ->
    bad_child_spec(Opts).

-spec bad_child_spec(term()) -> no_return().
bad_child_spec(Opts) ->
    erlang:error(badarg, [Opts], [
        {error_info, #{
            module => ws_port,
            cause => #{
                1 => io_lib:format("a map or proplist with module and url, got ~0tP", [Opts, 10])
            }
        }}
    ]).

%% @doc Whether `Module' implements this behaviour (Erlang `-behaviour' or
%% Elixir `use WsPort.Phoenix.Client').
-spec is_client_module(module()) -> boolean().
is_client_module(Module) ->
    case code:ensure_loaded(Module) of
        {module, Module} ->
            Attrs = Module:module_info(attributes),
            Behaviours = proplists:get_all_values(behaviour, Attrs) ++ proplists:get_all_values(behavior, Attrs),
            lists:member(?MODULE, lists:append(Behaviours));
        _ ->
            false
    end.

%%====================================================================
%% From callbacks
%%====================================================================

%% @equiv join(Topic, #{})
-spec join(binary()) -> ok | {error, term()}.
join(Topic) ->
    join(Topic, #{}).

%% @doc Joins `Topic' with `Params' (from a callback); the answer is a
%% `handle_join/3'. `{error, {already_joined, Topic}}', `{error, {bad_topic,
%% T}}'.
-spec join(binary(), term()) -> ok | {error, term()}.
join(Topic, Params) ->
    with_conn(fun(C) ->
        case ws_port_phoenix_conn:join(C, Topic, Params) of
            {ok, C1} -> {ok, C1};
            {error, _} = Error -> {Error, C}
        end
    end).

%% @doc Pushes `Event' with `Payload' to a topic joined or being joined
%% (from a callback); returns the ref of the coming `handle_reply/3'.
-spec push(binary(), binary(), term()) -> {ok, binary()} | {error, term()}.
push(Topic, Event, Payload) ->
    with_conn(fun(C) ->
        case ws_port_phoenix_conn:push(C, Topic, Event, Payload) of
            {ok, Ref, C1} -> {{ok, Ref}, C1};
            {error, _} = Error -> {Error, C}
        end
    end).

%% @doc Leaves `Topic' (from a callback): it is not rejoined any more;
%% `handle_leave/2' follows.
-spec leave(binary()) -> ok | {error, term()}.
leave(Topic) ->
    with_conn(fun(C) ->
        case ws_port_phoenix_conn:leave(C, Topic) of
            {ok, Events, C1} ->
                put(?EVENTS, get(?EVENTS) ++ Events),
                {ok, C1};
            {error, _} = Error ->
                {Error, C}
        end
    end).

with_conn(Fun) ->
    case get(?CONN) of
        undefined ->
            erlang:error({not_in_client, "call join/push/leave from a ws_port_phoenix_client callback"});
        C ->
            {Result, C1} = Fun(C),
            put(?CONN, C1),
            Result
    end.

%%====================================================================
%% From outside
%%====================================================================

%% @equiv call(Client, Request, 5000)
call(Client, Request) -> gen_server:call(Client, Request).

%% @doc A call handled by `handle_call/3'.
call(Client, Request, Timeout) -> gen_server:call(Client, Request, Timeout).

%% @doc A cast handled by `handle_cast/2'.
cast(Client, Msg) -> gen_server:cast(Client, Msg).

%% @doc Stops the client (its socket is closed with 1000). `ok' also when
%% it has ended already (as {@link ws_port_client:close/1}).
-spec stop(gen_server:server_ref()) -> ok.
stop(Client) ->
    try
        gen_server:stop(Client)
    catch
        exit:noproc -> ok;
        exit:normal -> ok
    end.

%% @doc `#{topics, stats}' of the client's socket.
-spec info(gen_server:server_ref()) -> map().
info(Client) -> gen_server:call(Client, {?MODULE, info}).

%%====================================================================
%% gen_server
%%====================================================================

%% @private
init({Module, Url, Opts}) ->
    process_flag(trap_exit, true),
    case ws_port_phoenix_conn:open(Url, conn_opts(Module, Opts)) of
        {ok, Conn} ->
            put(?CONN, Conn),
            put(?EVENTS, []),
            Result =
                case erlang:function_exported(Module, init, 1) of
                    true -> Module:init(maps:get(init_arg, Opts, []));
                    false -> {ok, maps:get(init_arg, Opts, [])}
                end,
            Conn1 = erase(?CONN),
            case Result of
                {ok, State} ->
                    {ok, #st{mod = Module, state = State, conn = Conn1}};
                {stop, Reason} ->
                    ws_port_phoenix_conn:close(Conn1),
                    {stop, Reason};
                ignore ->
                    ws_port_phoenix_conn:close(Conn1),
                    ignore
            end;
        {error, Reason} ->
            {stop, Reason}
    end.

%% @private
handle_call({?MODULE, info}, _From, #st{conn = C} = St) ->
    {reply, #{topics => ws_port_phoenix_conn:topics(C), stats => ws_port_phoenix_conn:stats(C)}, St};
handle_call({'$ws_port_client', health}, _From, St) ->
    %% ws_port_client_sup:send_balanced/2 asks every client of its
    %% supervisor: a Phoenix client takes no raw frames
    {reply, #{connected => false, phoenix => true}, St};
handle_call({'$ws_port_client', _}, _From, St) ->
    {reply, {error, not_a_ws_port_client}, St};
handle_call(Request, From, #st{mod = Mod, state = S} = St) ->
    case erlang:function_exported(Mod, handle_call, 3) of
        false ->
            {reply, {error, {not_implemented, handle_call}}, St};
        true ->
            {Result, St1} = run(fun() -> Mod:handle_call(Request, From, S) end, St),
            case Result of
                {reply, Reply, S1} -> after_callback(St1#st{state = S1}, {reply, Reply});
                {noreply, S1} -> after_callback(St1#st{state = S1}, noreply);
                {stop, Reason, Reply, S1} -> {stop, Reason, Reply, St1#st{state = S1}};
                {stop, Reason, S1} -> {stop, Reason, St1#st{state = S1}}
            end
    end.

%% @private
handle_cast(Msg, St) ->
    callback(handle_cast, [Msg], St).

%% @private
handle_info(Msg, #st{conn = C} = St) ->
    case ws_port_phoenix_conn:handle_info(Msg, C) of
        {ok, Events, C1} -> events(Events, St#st{conn = C1});
        unknown -> callback(handle_info, [Msg], St)
    end.

%% @private
terminate(Reason, #st{mod = Mod, state = S, conn = C}) ->
    put(?CONN, C),
    _ =
        case erlang:function_exported(Mod, terminate, 2) of
            true -> Mod:terminate(Reason, S);
            false -> ok
        end,
    ws_port_phoenix_conn:close(erase(?CONN)).

%%====================================================================
%% Running callbacks
%%====================================================================

%% Runs the engine's events through the callbacks, one after the other.
events([], St) ->
    {noreply, St};
events([Event | Rest], St) ->
    case event(Event, St) of
        {noreply, St1} -> events(Rest, St1);
        Stop -> Stop
    end.

event({connected, _Info}, St) ->
    callback(handle_connect, [], St);
event({disconnected, Reason, _Info}, St) ->
    callback(handle_disconnect, [Reason], St);
event({closed, Reason}, St) ->
    case callback(handle_disconnect, [Reason], St) of
        {noreply, St1} -> {stop, {closed, Reason}, St1};
        Stop -> Stop
    end;
event({joined, Topic, Reply, _Rejoin}, St) ->
    callback(handle_join, [Topic, {ok, Reply}], St);
event({join_error, Topic, Reply, _Rejoin}, St) ->
    callback(handle_join, [Topic, {error, Reply}], St);
event({join_timeout, Topic, _Rejoin}, St) ->
    callback(handle_join, [Topic, {error, timeout}], St);
event({reply, Ref, _Topic, Status, Reply}, St) ->
    callback(handle_reply, [Ref, {Status, Reply}], St);
event({push_error, Ref, _Topic, Why}, St) ->
    callback(handle_reply, [Ref, {error, Why}], St);
event({message, Topic, Event, Payload}, #st{mod = Mod} = St) ->
    T0 = erlang:monotonic_time(),
    Result = callback(handle_message, [Topic, Event, Payload], St),
    ws_port_telemetry:execute(
        [ws_port, phoenix, message],
        #{duration => erlang:monotonic_time() - T0},
        #{topic => Topic, event => Event, module => Mod}
    ),
    Result;
event({topic_closed, Topic, Reason}, St) ->
    callback(handle_topic_close, [Topic, Reason], St);
event({left, Topic}, St) ->
    callback(handle_leave, [Topic], St);
event(_Other, St) ->
    {noreply, St}.

callback(Name, Args, #st{mod = Mod, state = S} = St) ->
    case erlang:function_exported(Mod, Name, length(Args) + 1) of
        false ->
            after_callback(St, noreply);
        true ->
            {Result, St1} = run(fun() -> apply(Mod, Name, Args ++ [S]) end, St),
            case Result of
                {ok, S1} -> after_callback(St1#st{state = S1}, noreply);
                {noreply, S1} -> after_callback(St1#st{state = S1}, noreply);
                {stop, Reason, S1} -> {stop, Reason, St1#st{state = S1}};
                Other -> {stop, {bad_return_value, Name, Other}, St1}
            end
    end.

%% The conn is in the process dictionary while a callback runs, for
%% join/push/leave.
run(Fun, #st{conn = C} = St) ->
    put(?CONN, C),
    try Fun() of
        Result -> {Result, St#st{conn = get(?CONN)}}
    after
        erase(?CONN)
    end.

%% Events made by the callback (a leave while disconnected) run now.
after_callback(St, Reply) ->
    case erase(?EVENTS) of
        Events when is_list(Events), Events =/= [] ->
            put(?EVENTS, []),
            case events(Events, St) of
                {noreply, St1} -> reply(Reply, St1);
                Stop -> Stop
            end;
        _ ->
            put(?EVENTS, []),
            reply(Reply, St)
    end.

reply(noreply, St) -> {noreply, St};
reply({reply, Reply}, St) -> {reply, Reply, St}.
