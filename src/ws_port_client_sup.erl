%% @doc A dynamic supervisor of {@link ws_port_client} processes, with
%% health-based load balancing over its clients.
%%
%% The library starts none: add it to your own supervision tree, e.g.
%% `ws_port_client_sup:child_spec(#{})', then start clients in it with
%% {@link start_client/2}. Clients are `transient': a crashing client is
%% restarted (a new process, which connects again and runs
%% `handle_connect/2'), one stopped by {@link stop_client/1} or {@link
%% ws_port_client:close/1} is not. More than `max_restarts' restarts in
%% `max_seconds' (default 10 in 60) end the supervisor itself, as for any
%% OTP supervisor.
%%
%% Functions without a supervisor argument use the default name
%% `ws_port_client_sup'.
-module(ws_port_client_sup).

%% RFC 6455 5.5: control frames carry at most 125 bytes.
-define(MAX_CONTROL_PAYLOAD, 125).

-behaviour(supervisor).

-export([start_link/0, start_link/1, child_spec/1]).
-export([start_client/1, start_client/2, start_client/3]).
-export([stop_client/1, stop_client/2, list_clients/0, list_clients/1]).
-export([send_balanced/1, send_balanced/2, rank/1]).
-export([init/1, start_worker/3]).

-export_type([sup_opts/0, balance_opts/0]).

-type sup_ref() :: pid() | atom() | {atom(), node()} | {global, term()} | {via, module(), term()}.

%% Options of start_link/1.
-type sup_opts() ::
    #{
        name => atom() | {local, atom()} | {global, term()} | {via, module(), term()} | false,
        max_restarts => non_neg_integer(),
        max_seconds => pos_integer()
    }
    | proplists:proplist().

%% Options of send_balanced/2.
-type balance_opts() ::
    #{
        max_attempts => pos_integer(),
        client_discovery => fun(() -> [pid()]) | {module(), atom(), [term()]},
        supervisor => sup_ref(),
        timeout => timeout()
    }
    | proplists:proplist().

%%====================================================================
%% Starting
%%====================================================================

%% @equiv start_link(#{})
-spec start_link() -> supervisor:startlink_ret().
start_link() ->
    start_link(#{}).

%% @doc Starts the supervisor. Options: `name' (default `ws_port_client_sup';
%% `false' for none), `max_restarts' (10), `max_seconds' (60). Another
%% key, a bad value or a key given twice is `{error, {bad_option, Name,
%% Value}}' (`{bad_option, {duplicate, Name}, Value}'), without starting
%% anything.
-spec start_link(sup_opts()) -> supervisor:startlink_ret().
start_link(Opts) ->
    case check_opts(Opts, fun sup_opt/2) of
        {ok, Map} ->
            Intensity = maps:get(max_restarts, Map, 10),
            Period = maps:get(max_seconds, Map, 60),
            case maps:get(name, Map, ?MODULE) of
                false -> supervisor:start_link(?MODULE, {Intensity, Period});
                Name when is_atom(Name) -> supervisor:start_link({local, Name}, ?MODULE, {Intensity, Period});
                Name -> supervisor:start_link(Name, ?MODULE, {Intensity, Period})
            end;
        {error, _} = Error ->
            Error
    end.

%% Options as a map, each known and valid: else {error, {bad_option, Name,
%% Value}} (options_map's errors for what is not a map or proplist).
check_opts(Opts, Valid) ->
    case ws_port_proto:options_map(Opts) of
        {ok, Map} ->
            case [{K, V} || {K, V} <- lists:sort(maps:to_list(Map)), not Valid(K, V)] of
                [] -> {ok, Map};
                [{K, V} | _] -> {error, {bad_option, K, V}}
            end;
        {error, _} = Error ->
            Error
    end.

sup_opt(name, false) -> true;
sup_opt(name, Name) when is_atom(Name) -> true;
sup_opt(name, {local, Name}) -> is_atom(Name);
sup_opt(name, {global, _}) -> true;
sup_opt(name, {via, Mod, _}) -> is_atom(Mod);
sup_opt(max_restarts, N) -> is_integer(N) andalso N >= 0;
sup_opt(max_seconds, N) -> is_integer(N) andalso N > 0;
sup_opt(_, _) -> false.

balance_opt(max_attempts, N) -> is_integer(N) andalso N > 0;
balance_opt(client_discovery, F) when is_function(F, 0) -> true;
balance_opt(client_discovery, {M, F, A}) -> is_atom(M) andalso is_atom(F) andalso is_list(A);
balance_opt(supervisor, _) -> true;
balance_opt(timeout, T) -> T =:= infinity orelse (is_integer(T) andalso T >= 0);
balance_opt(_, _) -> false.

%% @doc A child specification for the supervisor (options as {@link
%% start_link/1}; `id' defaults to the module).
-spec child_spec(sup_opts()) -> supervisor:child_spec().
child_spec(Opts) ->
    {Id, Args} =
        case ws_port_proto:options_map(Opts) of
            {ok, Map} -> {maps:get(id, Map, ?MODULE), maps:remove(id, Map)};
            %% start_link/1 says what is wrong when the supervisor starts it
            {error, _} -> {?MODULE, Opts}
        end,
    #{
        id => Id,
        start => {?MODULE, start_link, [Args]},
        restart => permanent,
        shutdown => infinity,
        type => supervisor,
        modules => [?MODULE]
    }.

%% @private
init({Intensity, Period}) ->
    Flags = #{strategy => simple_one_for_one, intensity => Intensity, period => Period},
    Child = #{
        id => ws_port_client,
        start => {?MODULE, start_worker, []},
        restart => transient,
        shutdown => 5000,
        type => worker,
        modules => [ws_port_client, ws_port_phoenix_client]
    },
    {ok, {Flags, [Child]}}.

%% @private
%% A client of a ws_port_phoenix_client module (Phoenix Channels) runs as
%% one; any other module as a ws_port_client.
start_worker(Module, Url, Opts) ->
    case ws_port_phoenix_client:is_client_module(Module) of
        true -> ws_port_phoenix_client:start_link(Module, Url, Opts);
        false -> ws_port_client:start_link(Module, Url, Opts)
    end.

%%====================================================================
%% Clients
%%====================================================================

%% @equiv start_client(UrlOrConfig, #{})
-spec start_client(ws_port:url() | map() | proplists:proplist()) ->
    supervisor:startchild_ret().
start_client(UrlOrConfig) ->
    start_client(UrlOrConfig, #{}).

%% @doc Starts a supervised client. `UrlOrConfig' is the URL, or a map or
%% proplist with `url' and any option; `Opts' (merged over it) are the
%% options of {@link ws_port_client:start_link/3}, plus `module' (the
%% callback module; default {@link ws_port_client_forward}, forwarding to
%% the caller) and `supervisor' (default `ws_port_client_sup'). A module
%% of the {@link ws_port_phoenix_client} behaviour (Phoenix Channels) is
%% started with {@link ws_port_phoenix_client:start_link/3} and its
%% options.
%% `on_connect' and `on_disconnect' hooks run in the client, e.g.
%% `{pg, join, [Scope, Group]}' and `{pg, leave, [Scope, Group]}'.
-spec start_client(
    unicode:chardata() | map() | proplists:proplist(), map() | proplists:proplist()
) -> supervisor:startchild_ret().
start_client(UrlOrConfig, Opts) ->
    case client_map(UrlOrConfig, Opts) of
        {ok, Map} ->
            {Sup, Map2} = take(supervisor, Map, ?MODULE),
            start_child(Sup, Map2);
        {error, _} = Error ->
            Error
    end.

%% @doc As {@link start_client/2} in the supervisor `Sup'.
-spec start_client(sup_ref(), ws_port:url() | map() | proplists:proplist(), map() | proplists:proplist()) ->
    supervisor:startchild_ret().
start_client(Sup, UrlOrConfig, Opts) ->
    case client_map(UrlOrConfig, Opts) of
        {ok, Map} -> start_child(Sup, maps:remove(supervisor, Map));
        {error, _} = Error -> Error
    end.

%% The URL or config and the options, merged (the options win); a key
%% given twice in one proplist is refused.
client_map(UrlOrConfig, Opts) ->
    case {client_config(UrlOrConfig), ws_port_proto:options_map(Opts)} of
        {{ok, Config}, {ok, OptsMap}} -> {ok, maps:merge(Config, OptsMap)};
        {{error, _} = Error, _} -> Error;
        {_, {error, _} = Error} -> Error
    end.

%% A URL, or the client's options (checked: a key twice is refused).
client_config(List) when is_list(List) ->
    case io_lib:char_list(List) of
        true -> {ok, #{url => List}};
        false -> ws_port_proto:options_map(List)
    end;
client_config(Url) when is_binary(Url) ->
    {ok, #{url => Url}};
client_config(#{'__struct__' := 'Elixir.URI'} = Url) ->
    %% an Elixir %URI{} is a URL, not a config map
    {ok, #{url => Url}};
client_config(Config) when is_map(Config) ->
    {ok, Config};
client_config(Other) ->
    {error, {bad_option, url, Other}}.

start_child(Sup, Map) ->
    {Url, Map2} = take(url, Map, undefined),
    {Module, Map3} = take(module, Map2, ws_port_client_forward),
    Map4 =
        case Module of
            ws_port_client_forward -> maps:merge(#{init_arg => self()}, Map3);
            _ -> Map3
        end,
    case Url of
        undefined -> {error, {bad_option, url, undefined}};
        %% the supervisor keeps the arguments (for restarts) and prints them
        %% in its reports: the TLS key and password and the proxy as funs
        _ -> supervisor:start_child(Sup, [Module, Url, ws_port_proto:conceal(Map4)])
    end.

%% @equiv stop_client(ws_port_client_sup, Pid)
-spec stop_client(pid()) -> ok | {error, not_found}.
stop_client(Pid) ->
    stop_client(?MODULE, Pid).

%% @doc Stops a client gracefully (its connection is closed with 1000 and
%% `terminate/2' runs); it is not restarted. `{error, not_found}' when
%% `Pid' is not a client of `Sup'. As with {@link ws_port_client:close/1},
%% frames delivered to the client but not yet handled are dropped (at most
%% 31 more may still be handled): the stop does not wait for a backlog to
%% go through `handle_frame/2'.
-spec stop_client(sup_ref(), pid()) -> ok | {error, not_found}.
stop_client(Sup, Pid) when is_pid(Pid) ->
    %% terminate_child/2 of a simple_one_for_one supervisor answers ok for
    %% any pid that is not alive: ask the supervisor first
    case lists:member(Pid, list_clients(Sup)) of
        true ->
            Stop = fun() -> supervisor:terminate_child(Sup, Pid) end,
            case ws_port_client:while_closing(Pid, Stop) of
                ok -> ok;
                {error, _} -> {error, not_found}
            end;
        false ->
            {error, not_found}
    end;
stop_client(_Sup, _) ->
    {error, not_found}.

%% @equiv list_clients(ws_port_client_sup)
-spec list_clients() -> [pid()].
list_clients() ->
    list_clients(?MODULE).

%% @doc The pids of the running clients of `Sup'.
-spec list_clients(sup_ref()) -> [pid()].
list_clients(Sup) ->
    [Pid || {_, Pid, _, _} <- supervisor:which_children(Sup), is_pid(Pid)].

%%====================================================================
%% Load balancing
%%====================================================================

%% @equiv send_balanced(Frame, #{})
-spec send_balanced(ws_port_client:frame() | [ws_port_client:frame()]) ->
    ok | {error, no_connections | {bad_frame, term()} | ws_port:send_error()}.
send_balanced(Frame) ->
    send_balanced(Frame, #{}).

%% @doc Sends `Frame' through the healthiest connected client, failing over
%% to the next one when a send fails.
%%
%% The clients are those `client_discovery' returns (a fun or `{M, F, A}';
%% default: the clients of `supervisor', itself by default
%% `ws_port_client_sup'), on any node. They are asked for their {@link
%% ws_port_client:health/1} at once (each answer within `timeout' ms,
%% default 1000); those not connected, or not answering, are left out; the
%% others are tried in order of fewest heartbeat misses, then fewest
%% errors, then lowest round-trip time, at most `max_attempts' of them
%% (default 3). Another option, or a bad value, is `{error, {bad_option,
%% Name, Value}}'. A failed send counts in that client's `errors'. Returns
%% `{error, no_connections}' when no client took the frame. A frame no
%% client may send is its own error, without a failover: `{error,
%% {bad_frame, F}}' (checked before any client is asked), `{error,
%% {invalid_utf8, Offset}}', `{error, {too_large, Size, 125}}' (a ping or
%% pong payload over 125 bytes). A message over one client's
%% `max_message_size' is tried on the next.
-spec send_balanced(ws_port_client:frame() | [ws_port_client:frame()], balance_opts()) ->
    ok
    | {error,
        no_connections | {bad_frame, term()} | {bad_option, term(), term()} | ws_port:send_error()}.
send_balanced(Frame, Opts) ->
    case ws_port_client:check_frames(Frame) of
        ok ->
            case check_opts(Opts, fun balance_opt/2) of
                {ok, Map} ->
                    MaxAttempts = maps:get(max_attempts, Map, 3),
                    Timeout = maps:get(timeout, Map, 1000),
                    Pids = discover(Map),
                    try_send(Frame, lists:sublist(rank(healths(Pids, Timeout)), MaxAttempts), Timeout);
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

discover(#{client_discovery := {M, F, A}}) ->
    apply(M, F, A);
discover(#{client_discovery := Fun}) when is_function(Fun, 0) ->
    Fun();
discover(Map) ->
    try
        list_clients(maps:get(supervisor, Map, ?MODULE))
    catch
        exit:_ -> []
    end.

%% Asks every client for its health concurrently.
healths(Pids, Timeout) ->
    Requests = [{Pid, gen_server:send_request(Pid, {'$ws_port_client', health})} || Pid <- lists:usort(Pids)],
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    lists:filtermap(
        fun({Pid, ReqId}) ->
            Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
            case gen_server:receive_response(ReqId, Left) of
                {reply, Health} when is_map(Health) -> {true, {Pid, Health}};
                _ -> false
            end
        end,
        Requests
    ).

%% @doc Orders clients by health, healthiest first, leaving out those not
%% connected: fewest consecutive heartbeat misses, then fewest errors, then
%% lowest last round-trip time (unknown last), then fewest reconnects.
-spec rank([{pid(), map()}]) -> [pid()].
rank(Healths) ->
    Scored = [{score(H), Pid} || {Pid, #{connected := true} = H} <- Healths],
    [Pid || {_, Pid} <- lists:sort(Scored)].

score(H) ->
    Rtt =
        case maps:get(last_rtt_us, H, undefined) of
            undefined -> infinity;
            R -> R
        end,
    {maps:get(misses, H, 0), maps:get(errors, H, 0), Rtt, maps:get(reconnects, H, 0)}.

try_send(_Frame, [], _Timeout) ->
    {error, no_connections};
try_send(Frame, [Pid | Rest], Timeout) ->
    case ws_port_client:send_frame(Pid, Frame, Timeout) of
        ok -> ok;
        %% about the frame, not the client: another would refuse it too
        {error, {invalid_utf8, _}} = Error -> Error;
        {error, {too_large, _, ?MAX_CONTROL_PAYLOAD}} = Error -> Error;
        {error, _} -> try_send(Frame, Rest, Timeout)
    end.

%%====================================================================
%% Helpers
%%====================================================================

take(Key, Map, Default) ->
    case maps:take(Key, Map) of
        {Value, Rest} -> {Value, Rest};
        error -> {Default, Map}
    end.
