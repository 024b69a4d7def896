%% @doc Application-level heartbeats for {@link ws_port_client}.
%%
%% Some servers want a heartbeat in their own protocol rather than (or as
%% well as) WebSocket pings: Deribit's `public/set_heartbeat', exchanges'
%% `{"op":"ping"}'. A module implementing this behaviour says what to send
%% and how to recognise the answer; {@link ws_port_client} runs it:
%%
%% <ol>
%% <li>`init(Opts)' once, when the client starts: returns the interval in
%%     ms at which the client checks the heartbeat, how many checks in a row
%%     may pass without one (`MaxMisses') and the module's state.</li>
%% <li>`connected(State)' after every (re)connect, before the client's own
%%     `handle_connect/2': frames to send first (e.g. "send me heartbeats
%%     every 30 s").</li>
%% <li>`handle_frame(Frame, State)' for every frame received, before the
%%     client's `handle_frame/2': `pass' hands the frame on to the client;
%%     `{alive, Rtt, Frames, State}' consumes it as a sign of life (with a
%%     round-trip time in microseconds when the module can measure one, else
%%     `undefined') and sends `Frames' (e.g. the answer to a test request);
%%     `{consumed, Frames, State}' consumes it without counting it (e.g. the
%%     acknowledgement of a setting).</li>
%% <li>`tick(State)' every interval while connected: frames to send as a
%%     probe (`[]' when the server drives the heartbeat).</li>
%% </ol>
%%
%% At every tick the client counts a miss when no `alive' (nor WebSocket
%% pong) came since the previous tick; `MaxMisses' misses in a row drop the
%% connection (reason `{heartbeat_timeout, Misses}') and the client connects
%% again. The first tick after a connect does not count.
%%
%% {@link ws_port_heartbeat_deribit} is a complete example.
-module(ws_port_heartbeat).

-export([resolve/1]).

-export_type([frame/0, spec/0]).

%% A frame to send, as {@link ws_port:send/2} takes it.
-type frame() :: {text | binary | ping | pong, iodata()}.

%% The `heartbeat' option of {@link ws_port_client:start_link/3}.
-type spec() ::
    ping_pong
    | none
    | deribit
    | module()
    | {deribit | module(), map() | proplists:proplist()}
    | #{type := ping_pong | none | deribit | module(), atom() => term()}.

-callback init(Opts :: map()) ->
    {ok, IntervalMs :: pos_integer(), MaxMisses :: pos_integer(), State :: term()}.
-callback connected(State :: term()) -> {[frame()], NewState :: term()}.
-callback tick(State :: term()) -> {[frame()], NewState :: term()}.
-callback handle_frame({text | binary, binary()}, State :: term()) ->
    pass
    | {alive, RttMicros :: non_neg_integer() | undefined, [frame()], NewState :: term()}
    | {consumed, [frame()], NewState :: term()}.

%% @doc Turns the `heartbeat' option into `ping_pong', `none' or `{Module,
%% Opts}'. Accepts `deribit' as a name for {@link
%% ws_port_heartbeat_deribit}, a module, `{Module, Opts}' and the map form
%% `#{type => deribit, interval => 30000}'.
-spec resolve(term()) -> {ok, ping_pong | none | {module(), map()}} | error.
resolve(ping_pong) ->
    {ok, ping_pong};
resolve(none) ->
    {ok, none};
resolve(false) ->
    {ok, none};
resolve(#{type := Type} = Map) ->
    resolve({Type, maps:remove(type, Map)});
resolve({ping_pong, _}) ->
    {ok, ping_pong};
resolve({none, _}) ->
    {ok, none};
resolve({Type, Opts}) when is_atom(Type), is_list(Opts) ->
    try maps:from_list(proplists:unfold(Opts)) of
        Map -> resolve({Type, Map})
    catch
        error:_ -> error
    end;
resolve({deribit, Opts}) when is_map(Opts) ->
    {ok, {ws_port_heartbeat_deribit, Opts}};
resolve({Module, Opts}) when is_atom(Module), is_map(Opts) ->
    case code:ensure_loaded(Module) of
        {module, Module} ->
            case
                lists:all(
                    fun({F, A}) -> erlang:function_exported(Module, F, A) end,
                    [{init, 1}, {connected, 1}, {tick, 1}, {handle_frame, 2}]
                )
            of
                true -> {ok, {Module, Opts}};
                false -> error
            end;
        {error, _} ->
            error
    end;
resolve(Name) when is_atom(Name) ->
    resolve({Name, #{}});
resolve(_) ->
    error.
