%% @doc A long-lived WebSocket client as a process with callbacks.
%%
%% `ws_port_client' owns one {@link ws_port} connection and calls a callback
%% module for what happens on it. The port program reconnects with backoff
%% (the `retry' option, on by default here); the module is told about every
%% loss and every (re)connect, which is where it authenticates and
%% subscribes again. Credit is managed for it: at most `window' messages are
%% ever waiting in the process's mailbox, whatever the server sends, because
%% the port stops reading the socket until the process has handled them.
%%
%% == Callbacks ==
%% All but `handle_frame/2' are optional.
%% <ul>
%% <li>`init(Arg) -> {ok, State} | {stop, Reason} | ignore'. Runs before the
%%     connection is opened (`start_link' does not wait for it).</li>
%% <li>`handle_connect(Info, State)': after every handshake, first and
%%     again after each reconnect. `Info' is the `up' map of {@link
%%     ws_port} plus `url' and `reconnects'.</li>
%% <li>`handle_frame({text | binary, Data}, State)': one whole message.</li>
%% <li>`handle_disconnect(Info, State)': the connection was lost. `Info' is
%%     `#{reason, attempt, delay_ms, unsent_bytes, final}'. When `final' is
%%     `false' the port program (or, after missed heartbeats, this process)
%%     is reconnecting and `{ok, State}' lets it go on; when `final' is
%%     `true' (retries exhausted, or a failure not in `retry_on') `{ok,
%%     State}' ends the process with reason `{closed, Reason}', which a
%%     `transient' supervisor restarts. `{stop, Reason, State}' always
%%     closes and stops.</li>
%% <li>`handle_info(Msg, State)', `handle_cast(Msg, State)': as gen_server.</li>
%% <li>`handle_call(Request, From, State)': as gen_server, plus `{reply,
%%     Reply, Frames, State}'; reply later with {@link reply/2}.</li>
%% <li>`terminate(Reason, State)': as gen_server (the process traps exits).</li>
%% </ul>
%% `handle_connect', `handle_frame', `handle_disconnect', `handle_info' and
%% `handle_cast' return `{ok, State}' (or `{noreply, State}'), `{reply,
%% Frames, State}' to send frames, or `{stop, Reason, State}'. A frame is
%% `{text, iodata()}', `{binary, iodata()}', `{ping, iodata()}' or a bare
%% binary (sent as text).
%%
%% == Options of start_link/3 ==
%% A map or a proplist. These belong to the client; every other option is
%% an option of {@link ws_port:connect/2} (`headers', `protocols', `tls',
%% `retry', `retry_on', `send_queue', `ping_interval', `proxy', ...).
%% <ul>
%% <li>`name': `atom()' or `{local | global, Name}' or `{via, M, Name}'.</li>
%% <li>`init_arg': the argument of `init/1' (default `[]').</li>
%% <li>`window': credit, the most messages delivered but not yet handled
%%     (default 100); `infinity' turns flow control off (`{active, true}').</li>
%% <li>`heartbeat': `ping_pong' (default: WebSocket pings by the port
%%     program, `ping_interval' 15000 and `idle_timeout' 45000 unless
%%     given), `none', `deribit', `{deribit, #{interval => Ms}}', `#{type
%%     => deribit, interval => Ms}' or a {@link ws_port_heartbeat} module as
%%     `Module' or `{Module, Opts}'.</li>
%% <li>`on_connect', `on_disconnect': `fun((pid()) -> any())' or `{M, F,
%%     Args}' (called as `apply(M, F, Args ++ [Pid])'), run in the client
%%     process after each handshake and when that connection is lost or the
%%     process ends; each `on_connect' is followed by one `on_disconnect'
%%     (e.g. `pg:join/3' and `pg:leave/3'). A hook that fails is logged.</li>
%% </ul>
%% After missed heartbeats the client closes the connection and opens a
%% new one; messages of the old connection still in its mailbox are
%% dropped.
%%
%% The `retry' default is `true' (the port program's policy: exponential
%% from 1 s to 30 s, full jitter, forever). The `retry_on' default is
%% `stay_connected': unlike {@link ws_port:connect/2}, the client reconnects
%% after any close by the server (1000 included: a feed that rotates its
%% connections must not stop it) except the closes that answer our own
%% frames, 1002, 1003, 1007 and 1009 (see {@link ws_port_retry:retry_on/1}),
%% which end it with `final' set. `active' and `await' are set by the
%% client and may not be given.
-module(ws_port_client).

-behaviour(gen_server).

-include("ws_port_int.hrl").

-export([start_link/1, start_link/3, start/3, child_spec/1]).
-export([send_frame/2, send_frame/3, call/2, call/3, cast/2, reply/2, close/1]).
-export([health/1, health/2, connection/1, option_names/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, format_status/1]).
-export([while_closing/2, check_frames/1]).

-export_type([client/0, frame/0, opts/0, health/0, disconnect_info/0, hook/0]).

-type client() :: pid() | atom() | {atom(), node()} | {global, term()} | {via, module(), term()}.
-type frame() :: {text | binary | ping | pong, iodata()} | binary().
-type opts() :: map() | proplists:proplist().
-type hook() :: fun((pid()) -> term()) | {module(), atom(), [term()]}.
-type disconnect_info() :: #{
    reason := term(),
    attempt := non_neg_integer(),
    delay_ms := non_neg_integer() | manual | undefined,
    unsent_bytes := non_neg_integer(),
    final := boolean()
}.
-type health() :: #{
    connected := boolean(),
    status := connecting | connected | reconnecting,
    heartbeat := ping_pong | none | module(),
    last_rtt_us := non_neg_integer() | undefined,
    misses := non_neg_integer(),
    total_misses := non_neg_integer(),
    max_misses := non_neg_integer() | undefined,
    reconnects := non_neg_integer(),
    disconnects := non_neg_integer(),
    errors := non_neg_integer(),
    last_error := term(),
    attempt := non_neg_integer(),
    uptime_ms := non_neg_integer(),
    age_ms := non_neg_integer()
}.

-type result(S) :: {ok, S} | {noreply, S} | {reply, [frame()] | frame(), S} | {stop, term(), S}.

-callback init(Arg :: term()) -> {ok, State :: term()} | {stop, Reason :: term()} | ignore.
-callback handle_connect(Info :: map(), State :: term()) -> result(term()).
-callback handle_frame({text | binary, binary()}, State :: term()) -> result(term()).
-callback handle_disconnect(disconnect_info(), State :: term()) -> result(term()).
-callback handle_info(Msg :: term(), State :: term()) -> result(term()).
-callback handle_cast(Msg :: term(), State :: term()) -> result(term()).
-callback handle_call(Request :: term(), From :: gen_server:from(), State :: term()) ->
    {reply, Reply :: term(), State :: term()}
    | {reply, Reply :: term(), [frame()] | frame(), State :: term()}
    | {noreply, State :: term()}
    | {stop, Reason :: term(), Reply :: term(), State :: term()}
    | {stop, Reason :: term(), State :: term()}.
-callback terminate(Reason :: term(), State :: term()) -> term().

-optional_callbacks([
    init/1,
    handle_connect/2,
    handle_disconnect/2,
    handle_info/2,
    handle_cast/2,
    handle_call/3,
    terminate/2
]).

-define(TAG, '$ws_port_client').
%% Raises badarg as ws_port does, in the function called: error_info names
%% the argument (the shell prints it, Elixir raises an ArgumentError).
-define(BADARG(Args, Cause),
    erlang:error(badarg, Args, [{error_info, #{module => ws_port, cause => Cause}}])
).
%% What gen_server:call/3 takes as a server and as a timeout.
-define(IS_CLIENT(C),
    (is_pid(C) orelse is_atom(C) orelse
        (is_tuple(C) andalso tuple_size(C) =:= 2 andalso is_atom(element(1, C)) andalso
            is_atom(element(2, C))) orelse
        (is_tuple(C) andalso tuple_size(C) =:= 2 andalso element(1, C) =:= global) orelse
        (is_tuple(C) andalso tuple_size(C) =:= 3 andalso element(1, C) =:= via andalso
            is_atom(element(2, C))))
).
-define(IS_TIMEOUT(T), (T =:= infinity orelse (is_integer(T) andalso T >= 0))).
-define(DEFAULT_WINDOW, 100).
%% close/1's mark (an ETS lookup, a few hundred ns here) is looked at on
%% every ?CLOSE_CHECK-th frame: at most ?CLOSE_CHECK - 1 frames are handled
%% after close/1 was called, whatever the backlog
-define(CLOSE_CHECK, 32).
-define(DEFAULT_PING_INTERVAL, 15000).
-define(CLIENT_KEYS, [name, init_arg, window, heartbeat, on_connect, on_disconnect, id]).
-define(CONNECT_KEYS, [
    headers,
    protocols,
    connect_timeout,
    tls,
    max_message_size,
    ping_interval,
    idle_timeout,
    driver,
    retry,
    retry_on,
    retry_fun,
    retry_state,
    send_queue,
    compress,
    proxy
]).

-record(st, {
    mod :: module() | undefined,
    mstate :: term(),
    url :: unicode:chardata() | undefined,
    conn_opts = #{} :: map(),
    conn :: ws_port:conn() | undefined,
    status = connecting :: connecting | connected | reconnecting,
    ever_up = false :: boolean(),
    %% credit: window size, frames handled since the last refill
    window :: pos_integer() | infinity,
    handled = 0 :: non_neg_integer(),
    %% frames received, modulo ?CLOSE_CHECK: close/1's mark is looked at
    %% when it is 0 (see handle_info/2)
    seen = 0 :: non_neg_integer(),
    %% heartbeat
    hb = none :: ping_pong | none | {module(), term()},
    hb_interval :: pos_integer() | undefined,
    hb_max :: pos_integer() | undefined,
    hb_timer :: reference() | undefined,
    hb_alive = true :: boolean(),
    misses = 0 :: non_neg_integer(),
    total_misses = 0 :: non_neg_integer(),
    %% why we asked the port to drop the connection (ws_port:reconnect/2):
    %% reported instead of its `reconnect' reason
    drop_reason :: term(),
    %% health
    last_rtt :: non_neg_integer() | undefined,
    reconnects = 0 :: non_neg_integer(),
    disconnects = 0 :: non_neg_integer(),
    errors = 0 :: non_neg_integer(),
    last_error :: term(),
    attempt = 0 :: non_neg_integer(),
    connected_at :: integer() | undefined,
    started_at :: integer(),
    on_connect :: hook() | undefined,
    on_disconnect :: hook() | undefined
}).

%%====================================================================
%% API
%%====================================================================

%% @doc Starts a client linked to the caller: `Module' is the callback
%% module, `Url' the `ws://' or `wss://' URL, `Opts' as described in the
%% module documentation. Returns once `init/1' has run; the connection is
%% opened in the background (`handle_connect/2' tells when it is up).
%% Options are checked here: a bad one gives `{error, {bad_option, Name,
%% Value}}'; so are the URL (`{error, {invalid_url, Detail}}') and the
%% module (`{error, {bad_module, Module, Why}}': not loadable, or no
%% `handle_frame/2'), so that these are error returns, not exit signals
%% through the link.
-spec start_link(module(), ws_port:url(), opts()) -> gen_server:start_ret().
start_link(Module, Url, Opts) ->
    start(fun gen_server:start_link/3, fun gen_server:start_link/4, Module, Url, Opts).

%% @doc As {@link start_link/3} with `module' and `url' taken from `Opts'
%% (`module' defaults to {@link ws_port_client_forward}). This is what
%% {@link child_spec/1} starts.
-spec start_link(opts()) -> gen_server:start_ret().
start_link(Opts) ->
    case ws_port_proto:options_map(Opts) of
        {ok, #{url := Url} = Map} ->
            Module = maps:get(module, Map, ws_port_client_forward),
            start_link(Module, Url, maps:without([url, module], Map));
        {ok, _} ->
            {error, {bad_option, url, undefined}};
        {error, _} = Error ->
            Error
    end.

%% @doc As {@link start_link/3}, without a link.
-spec start(module(), ws_port:url(), opts()) -> gen_server:start_ret().
start(Module, Url, Opts) ->
    start(fun gen_server:start/3, fun gen_server:start/4, Module, Url, Opts).

start(Start3, Start4, Module, Url, Opts) ->
    %% options, URL and module are checked by the caller: a bad one is an
    %% error return, not an exit signal through the link
    case check_start(Module, Url, Opts) of
        {ok, UrlBin, Map} ->
            Args = {Module, UrlBin, Map},
            case maps:find(name, Map) of
                error -> Start3(?MODULE, Args, []);
                {ok, Name} when is_atom(Name) -> Start4({local, Name}, ?MODULE, Args, []);
                {ok, Name} -> Start4(Name, ?MODULE, Args, [])
            end;
        {error, _} = Error ->
            Error
    end.

check_start(Module, Url, Opts) ->
    case ws_port_proto:normalize_url(Url) of
        {ok, UrlBin} ->
            case check_module(Module) of
                ok ->
                    case check_opts(Opts) of
                        {ok, Map} -> {ok, UrlBin, Map};
                        {error, _} = Error -> Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% handle_frame/2 is the one callback without a default.
check_module(Module) when is_atom(Module) ->
    case code:ensure_loaded(Module) of
        {module, Module} ->
            case erlang:function_exported(Module, handle_frame, 2) of
                true -> ok;
                false -> {error, {bad_module, Module, {not_exported, {handle_frame, 2}}}}
            end;
        {error, What} ->
            {error, {bad_module, Module, What}}
    end;
check_module(Module) ->
    {error, {bad_module, Module, not_an_atom}}.

check_opts(Opts) ->
    case ws_port_proto:options_map(Opts) of
        {ok, Map} ->
            case check_name(Map) of
                ok ->
                    case parse_opts(Map, check) of
                        ok -> {ok, Map};
                        {error, _} = Error -> Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% What gen_server:start_link/4 takes as a name (an atom: {local, Atom}).
check_name(#{name := Name}) ->
    case Name of
        _ when is_atom(Name) -> ok;
        {local, N} when is_atom(N) -> ok;
        {global, _} -> ok;
        {via, M, _} when is_atom(M) -> ok;
        _ -> {error, {bad_option, name, Name}}
    end;
check_name(_) ->
    ok.

%% @doc A child specification for a supervisor: `Opts' as for {@link
%% start_link/1} (with `url', and `module', `id' if wanted). The restart is
%% `transient': a client ended by {@link close/1}, `{stop, normal, _}' or
%% its supervisor is not restarted, a crash is.
-spec child_spec(opts()) -> supervisor:child_spec().
child_spec(Opts) ->
    %% options that are not a map or proplist: start_link/1 says so when
    %% the supervisor starts the child
    Map =
        case ws_port_proto:options_map(Opts) of
            {ok, M} -> M;
            {error, _} -> #{}
        end,
    Module = maps:get(module, Map, ws_port_client_forward),
    #{
        id => maps:get(id, Map, Module),
        %% the options as given (start_link/1 checks them), their secrets as
        %% funs: the supervisor keeps them, and prints them in its reports
        start => {?MODULE, start_link, [conceal(Opts)]},
        restart => transient,
        shutdown => 5000,
        type => worker,
        modules => [?MODULE, Module]
    }.

conceal(Opts) when is_map(Opts); is_list(Opts) -> ws_port_proto:conceal(Opts);
conceal(Opts) -> Opts.

%% @equiv send_frame(Client, Frame, 5000)
-spec send_frame(client(), frame() | [frame()]) -> ok | {error, term()}.
send_frame(Client, Frame) ->
    send_frame(Client, Frame, 5000).

%% @doc Sends one frame (or a list of frames, in order) on the client's
%% connection. A list with an element that is not a frame is `{error,
%% {bad_frame, Element}}' and none of it is sent. `{error, not_connected}' while it is reconnecting (unless
%% the `send_queue' option keeps it), `{error, closed}' after the end,
%% `{error, noproc}' for a client that is not running. Each failure counts
%% in the client's `errors' (see {@link health/1}). Not to be called from
%% the client's own callbacks: they return `{reply, Frames, State}'.
%% A `Client' that is not a pid or a name (of the forms gen_server takes),
%% or a bad `Timeout', raises `badarg' naming it, as {@link ws_port} does;
%% so do the other calls of this module.
-spec send_frame(client(), frame() | [frame()], timeout()) -> ok | {error, term()}.
send_frame(Client, Frame, Timeout) when ?IS_CLIENT(Client), ?IS_TIMEOUT(Timeout) ->
    try
        gen_server:call(Client, {?TAG, send, Frame}, Timeout)
    catch
        exit:{Reason, {gen_server, call, _}} -> {error, exit_reason(Reason)}
    end;
send_frame(Client, Frame, Timeout) ->
    ?BADARG([Client, Frame, Timeout], bad_call(Client, 3, Timeout)).

%% What is wrong with a call's client (argument 1) or timeout (argument N).
bad_call(Client, N, Timeout) ->
    case ?IS_CLIENT(Client) of
        false -> #{1 => not_client(Client)};
        true -> #{N => bad_timeout(Timeout)}
    end.

not_client(Term) ->
    io_lib:format(
        "not a ws_port_client (a pid, a registered name, {Name, Node}, {global, Name} "
        "or {via, Module, Name}), got ~0tP",
        [Term, 10]
    ).

bad_timeout(Timeout) ->
    io_lib:format("the timeout must be infinity or an integer >= 0 (ms), got ~0tP", [Timeout, 5]).

exit_reason({nodedown, _}) -> nodedown;
exit_reason({normal, _}) -> noproc;
exit_reason(Reason) -> Reason.

%% @equiv call(Client, Request, 5000)
-spec call(client(), term()) -> term().
call(Client, Request) ->
    call(Client, Request, 5000).

%% @doc Calls the client's `handle_call/3', as `gen_server:call/3': it
%% exits (`noproc', `timeout', ...) when the client is not running or does
%% not answer in time; so do {@link health/2} and {@link connection/1}.
%% {@link send_frame/3} returns those as `{error, Reason}', {@link close/1}
%% as `ok'.
-spec call(client(), term(), timeout()) -> term().
call(Client, Request, Timeout) when ?IS_CLIENT(Client), ?IS_TIMEOUT(Timeout) ->
    gen_server:call(Client, Request, Timeout);
call(Client, Request, Timeout) ->
    ?BADARG([Client, Request, Timeout], bad_call(Client, 3, Timeout)).

%% @doc Casts to the client's `handle_cast/2', as `gen_server:cast/2'.
-spec cast(client(), term()) -> ok.
cast(Client, Msg) when ?IS_CLIENT(Client) ->
    gen_server:cast(Client, Msg);
cast(Client, Msg) ->
    ?BADARG([Client, Msg], #{1 => not_client(Client)}).

%% @doc Replies to a `handle_call/3' that returned `{noreply, State}'.
-spec reply(gen_server:from(), term()) -> ok.
reply(From, Reply) ->
    gen_server:reply(From, Reply).

%% @doc Closes the connection (code 1000) and stops the client with reason
%% `normal' (a supervisor does not restart it). `ok' also when the client
%% is not running. Frames already delivered to the client but not yet
%% handled are dropped, not passed to `handle_frame/2' (at most 31 more
%% may still be handled): close/1 does not wait for a backlog (e.g.
%% `window => infinity' and a slow handler) to be worked through. Messages
%% other than frames are still handled in order.
-spec close(client()) -> ok.
close(Client) when not ?IS_CLIENT(Client) ->
    ?BADARG([Client], #{1 => not_client(Client)});
close(Client) ->
    Pid = mark_closing(Client),
    try
        gen_server:call(Client, {?TAG, close}, 10000)
    catch
        exit:{noproc, _} -> ok;
        exit:{normal, _} -> ok;
        exit:{{nodedown, _}, _} -> ok
    after
        unmark_closing(Pid)
    end.

%% @private
%% Runs Fun with Client marked as closing (as close/1 does): the frames in
%% its mailbox are dropped, not handled, until Fun returns; for
%% ws_port_client_sup:stop_client/2, whose shutdown would otherwise wait
%% behind them.
-spec while_closing(client(), fun(() -> Result)) -> Result.
while_closing(Client, Fun) ->
    Pid = mark_closing(Client),
    try
        Fun()
    after
        unmark_closing(Pid)
    end.

%% The client (a local pid) sees the mark before its next frame; returns
%% the pid marked, or undefined.
mark_closing(Client) ->
    case where(Client) of
        Pid when is_pid(Pid), node(Pid) =:= node() ->
            try
                _ = ets:update_counter(?WS_PORT_CLOSING, Pid, 1, {Pid, 0}),
                Pid
            catch
                %% ws_port is not running: nor is the client
                error:badarg -> undefined
            end;
        _ ->
            undefined
    end.

unmark_closing(undefined) ->
    ok;
unmark_closing(Pid) ->
    try ets:update_counter(?WS_PORT_CLOSING, Pid, -1) of
        0 -> _ = ets:delete_object(?WS_PORT_CLOSING, {Pid, 0}), ok;
        _ -> ok
    catch
        error:badarg -> ok
    end.

where(Pid) when is_pid(Pid) -> Pid;
where(Name) when is_atom(Name) -> whereis(Name);
where({global, Name}) -> global:whereis_name(Name);
where({via, Mod, Name}) -> Mod:whereis_name(Name);
where({Name, Node}) when is_atom(Name), Node =:= node() -> whereis(Name);
where(_) -> undefined.

%% Whether close/1 waits for this client.
closing() ->
    try
        ets:member(?WS_PORT_CLOSING, self())
    catch
        error:badarg -> false
    end.

%% @equiv health(Client, 5000)
-spec health(client()) -> health().
health(Client) ->
    health(Client, 5000).

%% @doc The client's health: `connected', `status', the heartbeat in use,
%% the last round-trip time (`last_rtt_us': of the application heartbeat,
%% of a WebSocket ping otherwise), heartbeats missed in a row (`misses')
%% and in all (`total_misses'), `reconnects' (handshakes after the first),
%% `disconnects', `errors' (failed sends and refused commands) and the
%% `last_error', the current retry `attempt', `uptime_ms' of the current
%% connection (0 when not connected) and `age_ms' of the process.
-spec health(client(), timeout()) -> health().
health(Client, Timeout) when ?IS_CLIENT(Client), ?IS_TIMEOUT(Timeout) ->
    gen_server:call(Client, {?TAG, health}, Timeout);
health(Client, Timeout) ->
    ?BADARG([Client, Timeout], bad_call(Client, 2, Timeout)).

%% @doc The client's current {@link ws_port:conn()} (it changes when the
%% client reconnects after missed heartbeats), for {@link ws_port:info/1}.
-spec connection(client()) -> {ok, ws_port:conn()} | {error, not_connected}.
connection(Client) when ?IS_CLIENT(Client) ->
    gen_server:call(Client, {?TAG, connection});
connection(Client) ->
    ?BADARG([Client], #{1 => not_client(Client)}).

%% @doc The option names {@link start_link/3} knows (its own and those of
%% {@link ws_port:connect/2} it passes on).
-spec option_names() -> [atom()].
option_names() ->
    ?CLIENT_KEYS ++ ?CONNECT_KEYS.

%%====================================================================
%% gen_server
%%====================================================================

%% @private
init({Module, Url, Opts}) ->
    process_flag(trap_exit, true),
    case code:ensure_loaded(Module) of
        {module, Module} ->
            case parse_opts(Opts, start) of
                {ok, St0} ->
                    St = St0#st{mod = Module, url = Url},
                    init_module(St, maps:get(init_arg, Opts, []));
                {error, Reason} ->
                    {stop, Reason}
            end;
        {error, What} ->
            {stop, {bad_module, Module, What}}
    end.

init_module(#st{mod = Module} = St, Arg) ->
    Result =
        case erlang:function_exported(Module, init, 1) of
            true -> Module:init(Arg);
            false -> {ok, Arg}
        end,
    case Result of
        {ok, MState} ->
            case open(St#st{mstate = MState}) of
                {ok, St2} -> {ok, St2};
                {error, Reason} -> {stop, Reason}
            end;
        {stop, Reason} ->
            {stop, Reason};
        ignore ->
            ignore;
        Other ->
            {stop, {bad_return_value, Other}}
    end.

%% @private
handle_call({?TAG, send, Frame}, _From, St) ->
    {Result, St2} = send_frames(Frame, St),
    {reply, Result, St2};
handle_call({?TAG, health}, _From, St) ->
    {reply, health_map(St), St};
handle_call({?TAG, connection}, _From, #st{conn = Conn, status = connected} = St) ->
    {reply, {ok, Conn}, St};
handle_call({?TAG, connection}, _From, St) ->
    {reply, {error, not_connected}, St};
handle_call({?TAG, close}, _From, St) ->
    St2 = drop_connection(St),
    {stop, normal, ok, St2};
handle_call(Request, From, #st{mod = Mod, mstate = S} = St) ->
    case erlang:function_exported(Mod, handle_call, 3) of
        false ->
            {reply, {error, {unknown_call, Request}}, St};
        true ->
            case Mod:handle_call(Request, From, S) of
                {reply, Reply, S2} ->
                    {reply, Reply, St#st{mstate = S2}};
                {reply, Reply, Frames, S2} ->
                    {_, St2} = send_frames(Frames, St#st{mstate = S2}),
                    {reply, Reply, St2};
                {noreply, S2} ->
                    {noreply, St#st{mstate = S2}};
                {stop, Reason, Reply, S2} ->
                    {stop, Reason, Reply, St#st{mstate = S2}};
                {stop, Reason, S2} ->
                    {stop, Reason, St#st{mstate = S2}};
                Other ->
                    error({bad_return_value, Other})
            end
    end.

%% @private
handle_cast(Msg, St) ->
    callback(handle_cast, [Msg], St).

%% @private
handle_info({ws_port, Conn, Frame}, #st{conn = Conn, seen = Seen} = St) ->
    case Seen =:= 0 andalso closing() of
        false ->
            on_frame(Frame, St#st{seen = (Seen + 1) rem ?CLOSE_CHECK});
        true ->
            %% close/1 waits behind this frame and those after it: they are
            %% dropped (the next clause), and the connection closed now so
            %% that no more come
            {noreply, drop_connection(St)}
    end;
handle_info({ws_port, _OldConn, _Frame}, St) ->
    %% from a connection dropped after missed heartbeats
    {noreply, St};
handle_info({ws_port_passive, Conn}, #st{conn = Conn} = St) ->
    %% credit is refilled as frames are handled (see refill/1)
    {noreply, St};
handle_info({ws_port_up, Conn, Info}, #st{conn = Conn} = St) ->
    on_up(Info, St);
handle_info({ws_port_down, Conn, reconnect, Info}, #st{conn = Conn, drop_reason = Why} = St) when
    Why =/= undefined
->
    on_down(Why, Info, false, St#st{drop_reason = undefined});
handle_info({ws_port_down, Conn, Reason, Info}, #st{conn = Conn} = St) when is_map(Info) ->
    on_down(Reason, Info, false, St);
handle_info({ws_port_down, Conn, Reason}, #st{conn = Conn} = St) ->
    on_down(Reason, #{}, false, St);
handle_info({ws_port_closed, Conn, Reason}, #st{conn = Conn} = St) ->
    on_down(Reason, #{}, true, St);
handle_info({ws_port_pong, Conn, Rtt}, #st{conn = Conn} = St) ->
    {noreply, St#st{last_rtt = Rtt, hb_alive = true}};
handle_info({ws_port_error, Conn, Error}, #st{conn = Conn} = St) ->
    {noreply, St#st{errors = St#st.errors + 1, last_error = Error}};
handle_info({timeout, Ref, ?TAG}, #st{hb_timer = Ref} = St) ->
    on_tick(St#st{hb_timer = undefined});
handle_info(Msg, St) when
    element(1, Msg) =:= ws_port;
    element(1, Msg) =:= ws_port_passive;
    element(1, Msg) =:= ws_port_up;
    element(1, Msg) =:= ws_port_down;
    element(1, Msg) =:= ws_port_closed;
    element(1, Msg) =:= ws_port_pong;
    element(1, Msg) =:= ws_port_error
->
    %% about a connection this client no longer uses
    {noreply, St};
handle_info({timeout, _, ?TAG}, St) ->
    {noreply, St};
handle_info(Msg, St) ->
    callback(handle_info, [Msg], St).

%% @private
terminate(Reason, #st{mod = Mod, mstate = S} = St) ->
    _ = drop_connection(St),
    %% a close/1 caller that died before it could take its mark away
    _ = catch ets:delete(?WS_PORT_CLOSING, self()),
    case erlang:function_exported(Mod, terminate, 2) of
        true -> Mod:terminate(Reason, S);
        false -> ok
    end.

%% @private
%% Crash reports and sys:get_status/1 show the state without the secrets
%% of the connect options (proxy password, TLS key and password).
-spec format_status(gen_server:format_status()) -> gen_server:format_status().
format_status(Status) ->
    maps:map(
        fun
            (K, V) when K =:= state; K =:= message; K =:= reason; K =:= log -> ws_port_proto:scrub(V);
            (_, V) -> V
        end,
        Status
    ).

%%====================================================================
%% Connection events
%%====================================================================

on_up(Info, #st{ever_up = EverUp, reconnects = Reconnects, url = Url} = St) ->
    Reconnects2 =
        case EverUp of
            true -> Reconnects + 1;
            false -> Reconnects
        end,
    St1 = St#st{
        status = connected,
        ever_up = true,
        reconnects = Reconnects2,
        attempt = 0,
        connected_at = erlang:monotonic_time(millisecond)
    },
    run_hook(St1#st.on_connect),
    St2 = heartbeat_connected(St1),
    Info2 = maps:merge(Info, #{url => to_binary(Url), reconnects => Reconnects2}),
    callback(handle_connect, [Info2], St2).

on_down(Reason, Info, Final, St) ->
    St0 =
        case {Reason, St#st.hb} of
            %% the port program's keepalive saw nothing for idle_timeout
            {idle_timeout, ping_pong} -> St#st{total_misses = St#st.total_misses + 1};
            _ -> St
        end,
    St1 = leave_connected(St0),
    Attempt = maps:get(attempt, Info, St#st.attempt + 1),
    DInfo = #{
        reason => Reason,
        attempt => Attempt,
        delay_ms => maps:get(delay_ms, Info, undefined),
        unsent_bytes => maps:get(unsent_bytes, Info, 0),
        final => Final
    },
    St2 =
        case Final of
            true -> St1#st{attempt = Attempt, conn = undefined, status = reconnecting};
            false -> St1#st{attempt = Attempt, status = reconnecting}
        end,
    case callback(handle_disconnect, [DInfo], St2) of
        {noreply, St3} when Final ->
            {stop, {closed, Reason}, St3};
        Other ->
            Other
    end.

%% The connection is no longer usable: hooks, heartbeat timer, counters.
leave_connected(#st{status = connected} = St) ->
    run_hook(St#st.on_disconnect),
    cancel_timer(St#st{
        status = reconnecting,
        connected_at = undefined,
        disconnects = St#st.disconnects + 1
    });
leave_connected(St) ->
    cancel_timer(St).

cancel_timer(#st{hb_timer = undefined} = St) ->
    St;
cancel_timer(#st{hb_timer = Ref} = St) ->
    _ = erlang:cancel_timer(Ref),
    St#st{hb_timer = undefined}.

%% Closes the connection (if any) for good, as the client ends.
drop_connection(#st{conn = undefined} = St) ->
    leave_connected(St);
drop_connection(#st{conn = Conn} = St) ->
    ok = ws_port:close(Conn),
    leave_connected(St#st{conn = undefined}).

on_frame(Frame, #st{hb = {HbMod, HbState}} = St) ->
    case HbMod:handle_frame(Frame, HbState) of
        pass ->
            handle_frame(Frame, St);
        {alive, Rtt, Frames, HbState2} ->
            St2 = St#st{hb = {HbMod, HbState2}, hb_alive = true, misses = 0},
            St3 =
                case Rtt of
                    undefined -> St2;
                    _ -> St2#st{last_rtt = Rtt}
                end,
            {_, St4} = send_frames(Frames, St3),
            {noreply, refill(St4)};
        {consumed, Frames, HbState2} ->
            {_, St2} = send_frames(Frames, St#st{hb = {HbMod, HbState2}}),
            {noreply, refill(St2)}
    end;
on_frame(Frame, St) ->
    handle_frame(Frame, St).

handle_frame(Frame, #st{mod = Mod, mstate = S} = St) ->
    Result = Mod:handle_frame(Frame, S),
    handle_result(Result, refill(St)).

%% Credit: the connection starts with `window' messages of credit; each
%% time half of it has been handled, that half is given back. So at most
%% `window' messages are ever delivered and not yet handled.
refill(#st{window = infinity} = St) ->
    St;
refill(#st{window = Window, handled = Handled, conn = Conn} = St) ->
    Batch = max(1, Window div 2),
    case Handled + 1 of
        N when N >= Batch ->
            _ = ws_port:setopts(Conn, [{active, N}]),
            St#st{handled = 0};
        N ->
            St#st{handled = N}
    end.

%%====================================================================
%% Heartbeats
%%====================================================================

heartbeat_connected(#st{hb = {HbMod, HbState}, hb_interval = Interval} = St) ->
    {Frames, HbState2} = HbMod:connected(HbState),
    {_, St2} = send_frames(Frames, St#st{hb = {HbMod, HbState2}}),
    Ref = erlang:start_timer(Interval, self(), ?TAG),
    St2#st{hb_timer = Ref, hb_alive = true, misses = 0};
heartbeat_connected(St) ->
    St.

on_tick(#st{status = connected, hb = {HbMod, HbState}} = St) ->
    Misses =
        case St#st.hb_alive of
            true -> 0;
            false -> St#st.misses + 1
        end,
    Total = St#st.total_misses + min(1, Misses),
    case Misses >= St#st.hb_max of
        true ->
            heartbeat_lost(St#st{misses = Misses, total_misses = Total});
        false ->
            {Frames, HbState2} = HbMod:tick(HbState),
            St2 = St#st{hb = {HbMod, HbState2}, misses = Misses, total_misses = Total},
            {_, St3} = send_frames(Frames, St2),
            Ref = erlang:start_timer(St#st.hb_interval, self(), ?TAG),
            {noreply, St3#st{hb_timer = Ref, hb_alive = false}}
    end;
on_tick(St) ->
    {noreply, St}.

%% Too many misses: the port program drops the connection and opens it again
%% at once (same handle, same credit; its retry policy applies if that
%% fails); handle_disconnect sees {heartbeat_timeout, Misses}. If the
%% connection is already gone, a new one is opened.
heartbeat_lost(#st{conn = Conn, misses = Misses} = St) ->
    logger:notice("ws_port_client ~p: ~b heartbeats missed, reconnecting to ~ts", [
        self(), Misses, St#st.url
    ]),
    case ws_port:reconnect(Conn, 0) of
        ok ->
            {noreply, cancel_timer(St#st{drop_reason = {heartbeat_timeout, Misses}})};
        {error, closed} ->
            reopen(St)
    end.

reopen(#st{conn = Conn, misses = Misses} = St) ->
    ok = ws_port:close(Conn),
    St1 = leave_connected(St#st{conn = undefined}),
    Reason = {heartbeat_timeout, Misses},
    DInfo = #{reason => Reason, attempt => 1, delay_ms => 0, unsent_bytes => 0, final => false},
    case callback(handle_disconnect, [DInfo], St1#st{attempt = 1}) of
        {noreply, St2} ->
            case open(St2) of
                {ok, St3} -> {noreply, St3};
                {error, Why} -> {stop, {closed, Why}, St2}
            end;
        Other ->
            Other
    end.

%%====================================================================
%% Callbacks and sending
%%====================================================================

callback(Fun, Args, #st{mod = Mod, mstate = S} = St) ->
    case erlang:function_exported(Mod, Fun, length(Args) + 1) of
        true -> handle_result(apply(Mod, Fun, Args ++ [S]), St);
        false -> {noreply, St}
    end.

handle_result({ok, S}, St) ->
    {noreply, St#st{mstate = S}};
handle_result({noreply, S}, St) ->
    {noreply, St#st{mstate = S}};
handle_result({reply, Frames, S}, St) ->
    {_, St2} = send_frames(Frames, St#st{mstate = S}),
    {noreply, St2};
handle_result({stop, Reason, S}, St) ->
    {stop, Reason, St#st{mstate = S}};
handle_result(Other, _St) ->
    error({bad_return_value, Other}).

%% Nothing of a list is sent when one of its frames is not a frame.
send_frames(Frames, St) ->
    case check_frames(Frames) of
        ok when is_list(Frames) ->
            send_list(Frames, St);
        ok ->
            send_list([Frames], St);
        {error, _} = Error ->
            {Error, St#st{errors = St#st.errors + 1, last_error = Error}}
    end.

send_list([], St) ->
    {ok, St};
send_list([Frame | Rest], #st{conn = Conn} = St) ->
    Result =
        case normalize_frame(Frame) of
            error -> {error, {bad_frame, Frame}};
            _ when Conn =:= undefined -> {error, not_connected};
            Normal -> ws_port:send(Conn, Normal)
        end,
    case Result of
        ok ->
            send_list(Rest, St);
        {error, _} = Error ->
            {Error, St#st{errors = St#st.errors + 1, last_error = Error}}
    end.

%% @private
%% `ok', or `{error, {bad_frame, Frame}}' for the first frame that is not
%% one (what send_frame/3 would return), without sending anything.
-spec check_frames(frame() | [frame()]) -> ok | {error, {bad_frame, term()}}.
check_frames(Frames) when is_list(Frames) ->
    case [F || F <- Frames, normalize_frame(F) =:= error] of
        [] -> ok;
        [Bad | _] -> {error, {bad_frame, Bad}}
    end;
check_frames(Frame) ->
    check_frames([Frame]).

normalize_frame({Type, Data} = Frame) when
    Type =:= text; Type =:= binary; Type =:= ping; Type =:= pong
->
    case is_iodata(Data) of
        true -> Frame;
        false -> error
    end;
normalize_frame(Data) when is_binary(Data) ->
    {text, Data};
normalize_frame(_) ->
    error.

is_iodata(Data) when is_binary(Data) -> true;
is_iodata(Data) when is_list(Data) ->
    try iolist_size(Data) of
        _ -> true
    catch
        error:badarg -> false
    end;
is_iodata(_) ->
    false.

run_hook(undefined) ->
    ok;
run_hook(Hook) ->
    try
        case Hook of
            {M, F, A} -> apply(M, F, A ++ [self()]);
            Fun -> Fun(self())
        end
    catch
        Class:Reason:Stack ->
            logger:error("ws_port_client ~p: hook ~p failed: ~p:~p~n~p", [
                self(), Hook, Class, Reason, Stack
            ])
    end,
    ok.

%%====================================================================
%% Options, connecting, health
%%====================================================================

%% check: in the caller of start_link, every option but what the heartbeat
%% module's init/1 says (it runs once, in the client); start: in init/1.
parse_opts(Opts, Mode) ->
    Keys = option_names() ++ [module, url],
    case [K || K <- maps:keys(Opts), not lists:member(K, Keys)] of
        [] -> parse_client_opts(Opts, Mode);
        [Bad | _] -> {error, {bad_option, Bad, maps:get(Bad, Opts)}}
    end.

parse_client_opts(Opts, Mode) ->
    Window = maps:get(window, Opts, ?DEFAULT_WINDOW),
    Hooks = [maps:get(K, Opts, undefined) || K <- [on_connect, on_disconnect]],
    HeartbeatOpt = maps:get(heartbeat, Opts, ping_pong),
    if
        not (Window =:= infinity orelse (is_integer(Window) andalso Window > 0)) ->
            {error, {bad_option, window, Window}};
        true ->
            case [{K, H} || {K, H} <- lists:zip([on_connect, on_disconnect], Hooks), not valid_hook(H)] of
                [{Name, Bad} | _] ->
                    {error, {bad_option, Name, Bad}};
                [] ->
                    [OnConnect, OnDisconnect] = Hooks,
                    case ws_port_heartbeat:resolve(HeartbeatOpt) of
                        {ok, Heartbeat} when Mode =:= check ->
                            case check_heartbeat(Heartbeat) of
                                ok ->
                                    case ws_port_proto:normalize_connect_opts(maps:with(?CONNECT_KEYS, Opts)) of
                                        {ok, _} -> ok;
                                        {error, _} = Error -> Error
                                    end;
                                {error, _} = Error ->
                                    Error
                            end;
                        {ok, Heartbeat} ->
                            St = #st{
                                window = Window,
                                on_connect = OnConnect,
                                on_disconnect = OnDisconnect,
                                started_at = erlang:monotonic_time(millisecond)
                            },
                            ConnOpts = maps:with(?CONNECT_KEYS, Opts),
                            init_heartbeat(Heartbeat, ConnOpts, St);
                        error ->
                            {error, {bad_option, heartbeat, HeartbeatOpt}}
                    end
            end
    end.

%% The built-in Deribit heartbeat's options, in the caller (its init/1 has
%% no side effect; a module of the user's is initialised in the client only).
check_heartbeat({ws_port_heartbeat_deribit, HbOpts}) ->
    try ws_port_heartbeat_deribit:init(HbOpts) of
        {ok, _, _, _} -> ok
    catch
        error:{bad_option, Key, Value} -> {error, {bad_option, {heartbeat, Key}, Value}}
    end;
check_heartbeat(_) ->
    ok.

valid_hook(undefined) -> true;
valid_hook(Fun) when is_function(Fun, 1) -> true;
valid_hook({M, F, A}) when is_atom(M), is_atom(F), is_list(A) -> true;
valid_hook(_) -> false.

init_heartbeat(ping_pong, ConnOpts, St) ->
    Ping = maps:get(ping_interval, ConnOpts, ?DEFAULT_PING_INTERVAL),
    Defaults = #{ping_interval => Ping, idle_timeout => 3 * Ping},
    finish_opts(maps:merge(Defaults, ConnOpts), St#st{hb = ping_pong});
init_heartbeat(none, ConnOpts, St) ->
    finish_opts(ConnOpts, St#st{hb = none});
init_heartbeat({HbMod, HbOpts}, ConnOpts, St) ->
    try HbMod:init(HbOpts) of
        {ok, Interval, MaxMisses, HbState} when
            is_integer(Interval), Interval > 0, is_integer(MaxMisses), MaxMisses > 0
        ->
            finish_opts(ConnOpts, St#st{
                hb = {HbMod, HbState}, hb_interval = Interval, hb_max = MaxMisses
            });
        Other ->
            {error, {bad_option, heartbeat, {HbMod, Other}}}
    catch
        error:{bad_option, Key, Value} -> {error, {bad_option, {heartbeat, Key}, Value}}
    end.

finish_opts(ConnOpts, #st{window = Window} = St) ->
    Active =
        case Window of
            infinity -> true;
            _ -> Window
        end,
    Retry = maps:get(retry, ConnOpts, true),
    %% staying connected is the client's job: any server close but one
    %% about our own frames is retried (see ws_port_retry:retry_on/1)
    RetryOn = maps:get(retry_on, ConnOpts, stay_connected),
    %% kept for every reconnection: the TLS key and password and the proxy
    %% as funs, so that the state does not hold them in clear
    ConnOpts2 = ws_port_proto:conceal(ConnOpts#{
        active => Active, await => false, retry => Retry, retry_on => RetryOn
    }),
    {ok, St#st{conn_opts = ConnOpts2}}.

%% Opens a new connection (await => false: the answer is ws_port_up or
%% ws_port_closed). The credit count starts again with it.
open(#st{url = Url, conn_opts = ConnOpts} = St) ->
    case ws_port:connect(Url, ConnOpts) of
        {ok, Conn} -> {ok, St#st{conn = Conn, handled = 0, status = connecting_status(St)}};
        {error, _} = Error -> Error
    end.

connecting_status(#st{ever_up = false}) -> connecting;
connecting_status(_) -> reconnecting.

health_map(#st{status = Status} = St) ->
    Now = erlang:monotonic_time(millisecond),
    Heartbeat =
        case St#st.hb of
            {HbMod, _} -> HbMod;
            Other -> Other
        end,
    #{
        connected => Status =:= connected,
        status => Status,
        heartbeat => Heartbeat,
        last_rtt_us => last_rtt(St),
        misses => St#st.misses,
        total_misses => St#st.total_misses,
        max_misses => St#st.hb_max,
        reconnects => St#st.reconnects,
        disconnects => St#st.disconnects,
        errors => St#st.errors,
        last_error => St#st.last_error,
        attempt => St#st.attempt,
        uptime_ms =>
            case St#st.connected_at of
                undefined -> 0;
                At -> Now - At
            end,
        age_ms => Now - St#st.started_at
    }.

%% With WebSocket pings the port program measures the round trip.
last_rtt(#st{hb = ping_pong, status = connected, conn = Conn, last_rtt = Last}) ->
    case ws_port:info(Conn) of
        {ok, #{rtt_us := Rtt}} when is_integer(Rtt), Rtt >= 0 -> Rtt;
        _ -> Last
    end;
last_rtt(#st{last_rtt = Last}) ->
    Last.

to_binary(Url) when is_binary(Url) -> Url;
to_binary(Url) -> unicode:characters_to_binary(Url).
