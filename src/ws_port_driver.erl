%% @doc A driver owns one port program (`priv/ws_port') and multiplexes many
%% WebSocket connections over it.
%%
%% It allocates connection ids, keeps the public ETS table of connections up
%% to date (so that {@link ws_port:send/2} goes from the caller straight to
%% the port), routes every event of the port to the connection's owner (one
%% hop), monitors owners (an owner that dies closes its connections with
%% 1001), and restarts the port program if it dies, re-issuing `connect' for
%% every connection it carried. Owners of open connections then get
%% `{ws_port_down, Conn, {port_exit, Status}, #{attempt => 1, delay_ms => 0,
%% unsent_bytes => 0}}' and, once the replayed handshake succeeded,
%% `{ws_port_up, Conn, Info}'. Handles stay valid.
%%
%% With the `retry' option (on by default) the port program reconnects by
%% itself: its `down' event becomes `{ws_port_down, Conn, Reason, #{attempt,
%% delay_ms, unsent_bytes}}' and the next `up' `{ws_port_up, Conn, Info}'.
%% A connect awaited by its caller ends with the first attempt: if that
%% fails, the caller gets `{error, Reason}' and the driver closes the
%% connection in the port (no retries).
%%
%% With `retry_fun' the port runs in manual retry mode and the driver
%% answers each `down' itself: it calls the fun on the connection's retry
%% state ({@link ws_port_retry:next/2}, inside try/catch, in the driver
%% process) and sends `{reconnect, Id, Delay}', or, on `stop' (or a crash
%% or a bad return value, logged as a warning), closes the connection: the
%% owner gets `{ws_port_closed, Conn, Reason}' with the reason of the last
%% failure. The state starts again from its initial value after each `up'.
%% The fun must be quick and must not call the driver (e.g. through
%% {@link ws_port}): the driver waits for it.
%%
%% Telemetry: see {@link ws_port_telemetry}.
%%
%% {@link controlling_process/3} moves messages as gen_tcp does: the driver
%% holds back what it would send to the new owner until the old owner has
%% forwarded what was already in its mailbox ({@link release/2}), so the new
%% owner sees every message in order.
%%
%% A guard covers each connection that waits on the port program (a
%% connect, or a retry after its delay): the program enforces
%% `connect_timeout' itself and reports a timeout as a retryable `down', so
%% the guard, `connect_timeout' (+ the retry's delay) + 3 s without news,
%% only asks whether the program is alive and still has the connection.
%% When it fires, the driver asks the program for that connection's
%% statistics (`{stats, Id}'). Answered, the guard starts again (the
%% program is slow, e.g. 10,000 connections reconnecting at once, not
%% dead). Answered with `unknown_id', the program has lost the connection
%% (a bug in it): the connection ends once, with `{port_lost_connection,
%% Detail}' (the owner gets `{ws_port_closed, Conn, {port_lost_connection,
%% Detail}}', an awaited connect `{error, {port_lost_connection,
%% Detail}}'), as it does when any other command about a connection the
%% driver holds is answered so. Not answered within 10 s, the driver looks
%% for other signs of life: a program that wrote anything meanwhile gets
%% another 10 s, and so does one that used CPU time (up to 6 periods in a
%% row; /proc, where there is one); a program that did neither (stopped,
%% blocked, gone) is hung, and the connections whose probe is unanswered
%% end with `timeout' (the owner gets `{ws_port_closed, Conn, timeout}', an
%% awaited connect `{error, timeout}'), once each, as before: a hung
%% program does not hold them forever.
%%
%% More than 5 port restarts within 10 seconds stop the driver with reason
%% `{port_exit, Status}' (owners get `{ws_port_closed, Conn, {port_exit,
%% Status}}').
%%
%% Users normally go through {@link ws_port}. The application starts a pool
%% of drivers; {@link start_link/0} and {@link start_link/1} start a
%% dedicated one, to be passed as the `driver' option of
%% {@link ws_port:connect/2}.
-module(ws_port_driver).
-behaviour(gen_server).

-include("ws_port_int.hrl").
-include_lib("kernel/include/logger.hrl").
-include_lib("kernel/include/file.hrl").

-export([start_link/0, start_link/1, start_link/2]).
-export([connect/4, close/4, controlling_process/3, release/2, info/2, await_ready/2]).
-export([program/1, program_stats/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, format_status/1]).

-export_type([key/0, handle/0]).

%% How a driver is named in connection handles and ETS keys.
-type key() :: atom() | pid().
%% A connection handle as built by the driver (ws_port:conn() to users).
-type handle() :: {ws_port, key(), ws_port_proto:id()}.

-type start_opt() :: {port_program, file:filename_all()} | {events_socket, boolean()}.

-record(conn, {
    handle :: handle(),
    %% undefined once the connection is closed by the user, abandoned after
    %% a connect timeout, or its owner died: nothing is delivered any more,
    %% the driver only waits for the port's `closed' event.
    %% (monitored once per owner, see #state.owners)
    owner :: pid() | undefined,
    %% the caller of an awaited connect, until `up' or `closed'
    from :: gen_server:from() | undefined,
    %% send {ws_port_up, Conn, Info} to the owner on the next `up'
    notify_up = false :: boolean(),
    url :: binary(),
    %% the proxy without its credentials (for info/2), or none
    proxy = none :: binary() | none,
    %% the connect options, replayed if the port program restarts
    wire :: [ws_port_proto:wire_opt()],
    connect_timeout :: pos_integer(),
    %% guard timer in case the port never answers a connect; `probe' once it
    %% fired and this connection's probe (a `probe' in #conn.stats) is out
    timer :: reference() | probe | undefined,
    %% callers of info/2 waiting for a `stats' event, oldest first, and
    %% `probe' for each liveness probe of the guard (see guard_fired/3)
    stats = [] :: [gen_server:from() | probe],
    %% erlang:monotonic_time() when connect was sent
    since :: integer(),
    replayed = false :: boolean(),
    %% the port's own reconnection policy (retry option), or the driver's
    %% (retry_fun: the port is in manual mode, the driver answers)
    retry = none :: none | auto | manual | callback,
    retry_fun :: ws_port_retry:retry_fun() | undefined,
    retry_init = #{} :: ws_port_retry:retry_state(),
    retry_state = #{} :: ws_port_retry:retry_state(),
    %% failed attempts since the last up (from the last down event)
    attempt = 0 :: non_neg_integer(),
    %% handshakes done (the first, then each reconnection)
    ups = 0 :: non_neg_integer(),
    %% the final outcome was already reported (telemetry closed sent)
    final = false :: boolean(),
    %% a handover to a new owner is in progress (see #hold{})
    hold = false :: boolean(),
    %% senders waiting for the port's {ready, Id} (see await_ready/2)
    waiting = [] :: [gen_server:from()],
    %% the current connection's handshake (from its `up' event), for info/2
    protocol :: binary() | undefined,
    headers :: [{binary(), binary()}] | undefined
}).

%% A handover in progress: what would have gone to the new owner while the
%% previous owner forwards its mailbox.
-record(hold, {
    %% the previous owner, and its monitor: if it dies, the hold ends
    from :: pid(),
    ref :: reference(),
    to :: pid(),
    %% held messages, newest first
    buf = [] :: [tuple()],
    %% a controlling_process call by the new owner, made during the hold
    next :: {gen_server:from(), pid()} | undefined
}).

-record(state, {
    key :: key(),
    port :: port(),
    %% where the port program's events arrive: a unix socket (inet's driver
    %% reads big packets straight into one binary), or undefined for stdout
    events :: gen_tcp:socket() | undefined,
    program :: file:filename_all(),
    %% events over a unix socket (true) or stdout
    use_socket = true :: boolean(),
    %% the socket's name: abstract (Linux, the default) or a filesystem path
    %% in a private directory (elsewhere, or a portable build of the program)
    events_ns = abstract :: events_ns(),
    conns = #{} :: #{ws_port_proto:id() => #conn{}},
    %% one monitor per owner, not per connection (an erlang:monitor is ~130
    %% bytes; issue 16): the ids of the connections it owns (#conn.owner)
    owners = #{} :: #{pid() => {reference(), #{ws_port_proto:id() => []}}},
    next_id = 1 :: ws_port_proto:id(),
    %% monotonic milliseconds of recent port restarts
    restarts = [] :: [integer()],
    held = #{} :: #{ws_port_proto:id() => #hold{}},
    %% callers of program_stats/1 waiting for {stats, 0, _}, oldest first
    pstats = [] :: [gen_server:from()],
    %% the deadline of the liveness probes out, if any: connections whose
    %% guard fired (timer = probe) wait for their answers
    probe :: reference() | undefined,
    %% what the program had done when the probes went out or were last
    %% extended (see progress/1), and how many extensions in a row it got
    %% for CPU time alone
    probe_mark = {0, undefined, 0} :: {non_neg_integer(), non_neg_integer() | undefined, non_neg_integer()},
    %% terms many connections hold alike (URL, connect options, handshake
    %% response headers): one copy on the heap, referenced by each #conn{}
    %% (see intern/2; an idle connection's memory, issue 16)
    interned = #{} :: #{term() => term()}
}).

-define(MAX_ID, 4294967295).
-define(DEFAULT_MAX_MESSAGE_SIZE, 64 * 1024 * 1024).
%% events socket: packets taken from it before the driver says "more"
%% (back pressure reaches the port program when the driver falls behind)
-define(EVENTS_ACTIVE, 64).
%% events socket: inet's read buffer. Its default (1460 bytes) took one or
%% two packets of small messages per read, so a backlog (the BEAM short of
%% CPU a moment) drained one poll round trip per packet: in the fan-in
%% benchmark (10,000 connections, 20,000 small messages/s, 735 B packets)
%% p90 went from 5-110 ms to about 3 ms with 16 or 64 KiB. A packet larger
%% than the buffer is moved into one of its own size, copying what was
%% read: 64 KiB cost 64 KiB messages ~10% more BEAM CPU, 16 KiB (the port
%% program's batches of small messages are about that) did not. A small
%% message, a sub-binary of its read, keeps at most this much alive.
-define(EVENTS_BUFFER, 16384).
-define(EVENTS_ACCEPT_MS, 5000).
%% the program is gone: its socket's end comes at once
-define(EVENTS_DRAIN_MS, 1000).
%% Linux: struct ucred {pid, uid, gid}
-define(SOL_SOCKET, 1).
-define(SO_PEERCRED, 17).
%% macOS and FreeBSD: struct xucred {version, uid, ngroups, groups[16]}
-define(SOL_LOCAL, 0).
-define(LOCAL_PEERCRED, 1).
-define(XUCRED_SIZE, 76).
%% macOS' sun_path holds 104 bytes (Linux 108)
-define(MAX_SOCKET_PATH, 100).
-type events_ns() :: abstract | path.
-define(CONNECT_GUARD_MS, 3000).
%% a port program that leaves the liveness probe unanswered this long, and
%% has written nothing and used no CPU meanwhile, is taken as hung: the
%% connections waiting on it end with `timeout'
-define(PROBE_TIMEOUT_MS, 10000).
%% ... and one that used CPU but wrote nothing, after this many such periods
-define(PROBE_BUSY_MAX, 6).
%% a driver idle this long hibernates: its heap shrinks to what its
%% connections hold (it grew during a burst of connects or traffic)
-define(HIBERNATE_AFTER_MS, 1000).
%% distinct terms kept by intern/2 before it starts afresh
-define(INTERN_MAX, 1024).
-define(MAX_RESTARTS, 5).
-define(RESTART_PERIOD_MS, 10000).

%%====================================================================
%% API
%%====================================================================

%% @doc Starts a driver with no registered name (a dedicated driver). Its
%% connections are keyed by its pid. The ws_port application must be
%% running (it owns the table of connections).
-spec start_link() -> gen_server:start_ret().
start_link() ->
    start_link(undefined, []).

%% @doc Starts a driver registered as `Name' (`undefined': none).
-spec start_link(atom()) -> gen_server:start_ret().
start_link(Name) ->
    start_link(Name, []).

%% @doc Starts a driver registered as `Name' (`undefined': none). Option
%% `{port_program, Path}' runs another build of the port program (e.g.
%% `priv/ws_port.asan'); the default is the application environment
%% `port_program' if set, else `priv/ws_port' of the ws_port application.
%% Option `{events_socket, false}' (default: application environment
%% `events_socket', else true) has the port program send its events on
%% stdout instead of a unix socket (slower for large messages: the BEAM's
%% spawn driver copies each packet three times, inet's driver once).
-spec start_link(atom(), [start_opt()]) -> gen_server:start_ret().
start_link(undefined, Opts) ->
    gen_server:start_link(?MODULE, {undefined, Opts}, [{hibernate_after, ?HIBERNATE_AFTER_MS}]);
start_link(Name, Opts) when is_atom(Name) ->
    gen_server:start_link({local, Name}, ?MODULE, {Name, Opts}, [
        {hibernate_after, ?HIBERNATE_AFTER_MS}
    ]).

%% @doc Opens a connection owned by the caller. `Opts' are normalised
%% options ({@link ws_port_proto:normalize_connect_opts/1}); with
%% `await => true' the call returns when the handshake succeeded or failed.
-spec connect(key(), binary(), ws_port_proto:opts(), timeout()) ->
    {ok, handle()} | {error, term()}.
connect(Driver, Url, Opts, Timeout) ->
    gen_server:call(Driver, {connect, Url, Opts}, Timeout).

%% @doc Closes a connection: the close command goes to the port and its
%% owner gets no further message for it.
-spec close(key(), ws_port_proto:id(), 1000..4999, binary()) -> ok.
close(Driver, Id, Code, Reason) ->
    gen_server:call(Driver, {close, Id, Code, Reason}, infinity).

%% @doc Makes `NewOwner' the owner of a connection; only the current owner
%% may do so. On `ok' the driver holds back the new owner's messages until
%% the caller, having forwarded the messages already in its mailbox, calls
%% {@link release/2} (if it dies first, the hold ends too).
-spec controlling_process(key(), ws_port_proto:id(), pid()) ->
    ok | {error, not_owner | closed}.
controlling_process(Driver, Id, NewOwner) ->
    gen_server:call(Driver, {controlling_process, Id, NewOwner}, infinity).

%% @doc Ends the hold started by {@link controlling_process/3}: the held
%% messages go to the new owner, then everything else.
-spec release(key(), ws_port_proto:id()) -> ok.
release(Driver, Id) ->
    gen_server:cast(Driver, {release, Id, self()}).

%% @doc Waits while the port program has said `{busy, Id}': more than 4 MiB
%% of this connection's frames wait to be written (a slow peer). Returns
%% when it says `{ready, Id}', or when the connection goes down, comes up or
%% closes; the caller then looks at the connection's state again.
-spec await_ready(key(), ws_port_proto:id()) -> ok.
await_ready(Driver, Id) ->
    try
        gen_server:call(Driver, {await_ready, Id}, infinity)
    catch
        exit:_ -> ok
    end.

%% @doc Asks the port program for a connection's statistics.
-spec info(key(), ws_port_proto:id()) -> {ok, map()} | {error, closed}.
info(Driver, Id) ->
    gen_server:call(Driver, {info, Id}, 30000).

%% @doc The driver's port program, for diagnostics: its Erlang port, OS pid
%% (e.g. to read its memory in /proc) and where its events arrive.
-spec program(key()) ->
    #{port := port(), os_pid := non_neg_integer() | undefined, events := socket | stdout}.
program(Driver) ->
    gen_server:call(Driver, program).

%% @doc The port program's own figures, for diagnostics and tests:
%% `connections' (connections it has not reported closed: their ids are in
%% use, whether open, connecting, waiting to retry or closing), `lingering'
%% (finished connections whose socket still drains, at most a second) and
%% `driver_connections' (the connections this driver still tracks, its own
%% and those closed but not yet reported closed by the port).
-spec program_stats(key()) ->
    {ok, #{
        connections := non_neg_integer(),
        lingering := non_neg_integer(),
        driver_connections := non_neg_integer()
    }}
    | {error, port_exit}.
program_stats(Driver) ->
    gen_server:call(Driver, program_stats, 30000).

%%====================================================================
%% gen_server callbacks
%%====================================================================

%% @private
-spec init({atom(), [start_opt()]}) -> {ok, #state{}} | {stop, term()}.
init({Name, Opts}) ->
    process_flag(trap_exit, true),
    Key =
        case Name of
            undefined -> self();
            _ -> Name
        end,
    case ets:whereis(?WS_PORT_TAB) of
        undefined ->
            {stop, {not_started, ws_port}};
        _ ->
            %% rows left by a previous incarnation of this driver
            true = ets:match_delete(?WS_PORT_TAB, {{Key, '_'}, '_', '_', '_', '_', '_'}),
            Program = port_program(Opts),
            UseSocket = proplists:get_value(
                events_socket, Opts, application:get_env(ws_port, events_socket, true)
            ),
            case open(Program, UseSocket, default_events_ns()) of
                %% ids start at random: a handle kept from before a restart
                %% of this driver must not name another owner's connection
                {ok, Port, Events, Ns} ->
                    {ok, #state{
                        key = Key,
                        port = Port,
                        events = Events,
                        program = Program,
                        use_socket = UseSocket,
                        events_ns = Ns,
                        next_id = rand:uniform(16#7fffffff)
                    }};
                {error, Reason} -> {stop, Reason}
            end
    end.

%% @private
-spec handle_call(term(), gen_server:from(), #state{}) ->
    {reply, term(), #state{}} | {noreply, #state{}}.
handle_call({connect, Url, Opts}, {Owner, _} = From, State) ->
    do_connect(Url, Opts, Owner, From, State);
handle_call({close, Id, Code, Reason}, _From, #state{conns = Conns} = State) ->
    case Conns of
        #{Id := #conn{owner = Owner} = C} when is_pid(Owner) ->
            command(State#state.port, ws_port_proto:close_cmd(Id, Code, Reason)),
            {C2, State2} = detach(C, {error, closed}, State),
            {reply, ok, State2#state{conns = Conns#{Id := C2}}};
        _ ->
            {reply, ok, State}
    end;
handle_call({controlling_process, Id, NewOwner}, {Caller, _} = From, State) ->
    #state{conns = Conns, held = Held} = State,
    case Conns of
        #{Id := #conn{owner = Caller, hold = true}} ->
            %% the caller got the connection moments ago and its previous
            %% owner is still forwarding: hand over once that is done
            #{Id := H} = Held,
            {noreply, State#state{held = Held#{Id := H#hold{next = {From, NewOwner}}}}};
        #{Id := #conn{owner = Caller} = C} ->
            {reply, ok, hand_over(Id, C, NewOwner, State)};
        #{Id := #conn{owner = Owner}} when is_pid(Owner) ->
            {reply, {error, not_owner}, State};
        _ ->
            {reply, {error, closed}, State}
    end;
handle_call({info, Id}, From, #state{conns = Conns} = State) ->
    case Conns of
        #{Id := #conn{owner = Owner, stats = Waiting} = C} when is_pid(Owner) ->
            command(State#state.port, ws_port_proto:stats_cmd(Id)),
            {noreply, State#state{conns = Conns#{Id := C#conn{stats = Waiting ++ [From]}}}};
        _ ->
            {reply, {error, closed}, State}
    end;
handle_call({await_ready, Id}, From, #state{key = Key, conns = Conns} = State) ->
    case {Conns, ets:lookup(?WS_PORT_TAB, {Key, Id})} of
        {#{Id := #conn{waiting = W} = C}, [{_, _, busy, _, _, _}]} ->
            {noreply, State#state{conns = Conns#{Id := C#conn{waiting = [From | W]}}}};
        _ ->
            {reply, ok, State}
    end;
handle_call(program, _From, #state{port = Port, events = Events} = State) ->
    OsPid =
        case erlang:port_info(Port, os_pid) of
            {os_pid, P} when is_integer(P) -> P;
            _ -> undefined
        end,
    Where =
        case Events of
            undefined -> stdout;
            _ -> socket
        end,
    {reply, #{port => Port, os_pid => OsPid, events => Where}, State};
handle_call(program_stats, From, #state{pstats = Waiting} = State) ->
    command(State#state.port, ws_port_proto:stats_cmd(0)),
    {noreply, State#state{pstats = Waiting ++ [From]}};
handle_call(Request, _From, State) ->
    {reply, {error, {badarg, Request}}, State}.

%% @private
-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast({release, Id, From}, #state{held = Held} = State) ->
    case Held of
        #{Id := #hold{from = From}} -> {noreply, end_hold(Id, true, State)};
        _ -> {noreply, State}
    end;
handle_cast(_Msg, State) ->
    {noreply, State}.

%% @private
-spec handle_info(term(), #state{}) -> {noreply, #state{}} | {stop, term(), #state{}}.
handle_info({tcp, Events, Packet}, #state{events = Events} = State) ->
    packet(Packet, State);
handle_info({Port, {data, Packet}}, #state{port = Port} = State) ->
    packet(Packet, State);
handle_info({tcp_passive, Events}, #state{events = Events} = State) ->
    %% (a closed socket: its tcp_closed follows, and the exit_status)
    _ = inet:setopts(Events, [{active, ?EVENTS_ACTIVE}]),
    {noreply, State};
handle_info({Tag, _Sock}, State) when Tag =:= tcp_closed; Tag =:= tcp_passive ->
    %% the events socket of the current port closes when the program exits:
    %% its exit_status restarts it; an old port's socket is of no interest
    {noreply, State};
handle_info({Tag, _Sock, _}, State) when Tag =:= tcp; Tag =:= tcp_error ->
    {noreply, State};
handle_info({Port, {exit_status, Status}}, #state{port = Port} = State) ->
    port_exited(Status, State);
handle_info({owner_down, Ref, process, Pid, _Reason}, #state{owners = Owners} = State) ->
    %% every connection of the owner is closed
    case Owners of
        #{Pid := {Ref, Ids}} ->
            State2 = State#state{owners = maps:remove(Pid, Owners)},
            {noreply, lists:foldl(fun(Id, S) -> owner_down(Id, Pid, S) end, State2, maps:keys(Ids))};
        _ ->
            {noreply, State}
    end;
handle_info({{handover, Id}, Ref, process, _Pid, _Reason}, #state{held = Held} = State) ->
    %% the previous owner died before it released the connection
    case Held of
        #{Id := #hold{ref = Ref}} -> {noreply, end_hold(Id, true, State)};
        _ -> {noreply, State}
    end;
handle_info({timeout, TRef, {connect_timeout, Id}}, #state{conns = Conns} = State) ->
    case Conns of
        #{Id := #conn{timer = TRef, owner = Owner} = C} when is_pid(Owner) ->
            {noreply, guard_fired(Id, C, State)};
        _ ->
            {noreply, State}
    end;
handle_info({timeout, TRef, probe_timeout}, #state{probe = TRef} = State) ->
    {noreply, probe_late(State)};
handle_info({'EXIT', Port, Reason}, #state{port = Port} = State) when Reason =/= normal ->
    %% The program died and a command was written to it before the
    %% emulator saw it exit: the write failed (epipe), the emulator closed
    %% the port and no exit_status will come. It is gone all the same.
    receive
        {Port, {exit_status, Status}} -> port_exited(Status, State)
    after 0 -> port_exited(Reason, State)
    end;
handle_info({'EXIT', Port, _Reason}, State) when is_port(Port) ->
    %% handled with the exit_status message (or an old port's)
    {noreply, State};
handle_info(Msg, State) ->
    ?LOG_DEBUG("ws_port_driver: unexpected message ~P", [Msg, 20]),
    {noreply, State}.

packet(<<1, Entries/binary>>, #state{key = Key, conns = Conns} = State) ->
    case deliver(Entries, 0, undefined, Key, undefined, Conns, []) of
        [] -> {noreply, State};
        Held -> {noreply, hold_messages(lists:reverse(Held), State)}
    end;
packet(<<131, _/binary>> = Packet, State) ->
    try binary_to_term(Packet) of
        Event -> {noreply, event(Event, State)}
    catch
        error:badarg ->
            ?LOG_WARNING("ws_port: undecodable packet from the port program: ~P", [Packet, 20]),
            {noreply, State}
    end;
packet(Packet, State) ->
    ?LOG_WARNING("ws_port: unknown packet from the port program: ~P", [Packet, 20]),
    {noreply, State}.

%% @private
-spec terminate(term(), #state{}) -> ok.
%% Crash reports and sys:get_status/1 show the state and the last message
%% without proxy credentials or TLS keys and passwords (the connect options
%% hold them).
-spec format_status(gen_server:format_status()) -> gen_server:format_status().
format_status(Status) ->
    maps:map(
        fun
            %% the interned terms include connect options with proxy
            %% credentials and TLS keys as map keys: left out (the
            %% connections show theirs)
            (state, #state{} = V) -> ws_port_proto:scrub(V#state{interned = #{}});
            (K, V) when K =:= state; K =:= message; K =:= reason; K =:= log -> ws_port_proto:scrub(V);
            (_, V) -> V
        end,
        Status
    ).

terminate(Reason, State) ->
    #state{key = Key, port = Port, conns = Conns} = State2 = end_all_holds(State),
    _ = maps:fold(fun(Id, C, S) -> finish(Id, C, {driver_exit, Reason}, S) end, State2, Conns),
    _ = ets:match_delete(?WS_PORT_TAB, {{Key, '_'}, '_', '_', '_', '_', '_'}),
    %% EOF on stdin: the program closes every connection (1001) and exits
    catch port_close(Port),
    close_events(State#state.events),
    ok.

%%====================================================================
%% Connecting
%%====================================================================

do_connect(Url0, Opts, Owner, From, #state{key = Key, port = Port, conns = Conns} = State0) ->
    Id = next_id(State0#state.next_id, Conns),
    {Url, State1} = intern(Url0, State0),
    {Wire, State2} = intern(ws_port_proto:wire_opts(Opts), State1),
    State = own(Owner, Id, State2),
    route(Id, Owner),
    #{connect_timeout := Timeout, active := Active, await := Await} = Opts,
    command(Port, ws_port_proto:connect_cmd(Id, Url, Wire)),
    true = ets:insert(?WS_PORT_TAB, {{Key, Id}, Port, connecting, Active, queues(Wire), max_size(Wire)}),
    Handle = {ws_port, Key, Id},
    C = #conn{
        handle = Handle,
        owner = Owner,
        url = Url,
        proxy = ws_port_proxy:redact(maps:get(proxy, Opts, none)),
        wire = Wire,
        connect_timeout = Timeout,
        timer = guard_timer(Id, Timeout),
        retry = retry_mode(Opts, Wire),
        retry_fun = maps:get(retry_fun, Opts, undefined),
        retry_init = maps:get(retry_state, Opts, #{}),
        retry_state = maps:get(retry_state, Opts, #{}),
        since = erlang:monotonic_time()
    },
    case Await of
        true ->
            {noreply, State#state{conns = Conns#{Id => C#conn{from = From}}, next_id = inc_id(Id)}};
        false ->
            C2 = C#conn{notify_up = true},
            {reply, {ok, Handle}, State#state{conns = Conns#{Id => C2}, next_id = inc_id(Id)}}
    end.

%% The copy of Term this driver already holds, if any (then every connection
%% refers to the same term on the heap: the garbage collector keeps sharing
%% within a process), else Term, remembered. Bounded: starts afresh after
%% ?INTERN_MAX distinct terms.
intern(Term, #state{interned = I} = State) ->
    case I of
        #{Term := Shared} ->
            {Shared, State};
        _ when map_size(I) >= ?INTERN_MAX ->
            {Term, State#state{interned = #{Term => Term}}};
        _ ->
            {Term, State#state{interned = I#{Term => Term}}}
    end.

%% The upgrade response's headers: a header every connection got alike is
%% shared whole, a unique one (Sec-WebSocket-Accept) shares its name.
intern_headers(Headers, State) when is_list(Headers) ->
    lists:mapfoldr(
        fun
            ({Name, Value} = H, S) ->
                case S#state.interned of
                    #{H := Shared} ->
                        {Shared, S};
                    _ ->
                        {N, S2} = intern(Name, S),
                        case is_binary(Name) andalso string:lowercase(Name) of
                            <<"sec-websocket-accept">> -> {{N, Value}, S2};
                            _ -> intern({N, Value}, S2)
                        end
                end;
            (H, S) ->
                {H, S}
        end,
        State,
        Headers
    );
intern_headers(Headers, State) ->
    {Headers, State}.

queues(Wire) ->
    proplists:get_value(send_queue, Wire, 0) > 0.

%% The largest message send/2 lets through (the port's default for
%% max_message_size is 64 MiB).
max_size(Wire) ->
    proplists:get_value(max_message_size, Wire, ?DEFAULT_MAX_MESSAGE_SIZE).

retry_mode(#{retry_fun := _}, _Wire) ->
    callback;
retry_mode(_Opts, Wire) ->
    case proplists:get_value(retry, Wire, false) of
        false ->
            none;
        Retry ->
            case proplists:get_value(manual, Retry, false) of
                true -> manual;
                false -> auto
            end
    end.

%% The next free id at or after N, wrapping from 4294967295 to 1.
next_id(N, Conns) ->
    case is_map_key(N, Conns) of
        false -> N;
        true -> next_id(inc_id(N), Conns)
    end.

inc_id(?MAX_ID) -> 1;
inc_id(N) -> N + 1.

%% Id is owned by Pid now: monitored with its other connections.
own(Pid, Id, #state{owners = Owners} = State) ->
    Entry =
        case Owners of
            #{Pid := {Ref, Ids}} -> {Ref, Ids#{Id => []}};
            _ -> {erlang:monitor(process, Pid, [{tag, owner_down}]), #{Id => []}}
        end,
    State#state{owners = Owners#{Pid => Entry}}.

%% Id is no longer Pid's: its monitor goes with its last connection, and
%% its data no longer go straight to Pid (see route/2).
disown(Pid, Id, #state{owners = Owners} = State) ->
    unroute(Id),
    case Owners of
        #{Pid := {Ref, Ids}} ->
            case maps:remove(Id, Ids) of
                Left when map_size(Left) =:= 0 ->
                    demonitor(Ref, [flush]),
                    State#state{owners = maps:remove(Pid, Owners)};
                Left ->
                    State#state{owners = Owners#{Pid := {Ref, Left}}}
            end;
        _ ->
            State
    end.

%% The route of a connection's data (the hot path, deliver/7): Id => the
%% owner its messages go straight to, in the process dictionary. A lookup
%% in a map of 10,000 connections (a HAMT: a cache miss per level, then
%% the #conn{}) was the driver's largest cost per message in the fan-in
%% benchmark; the dictionary is one hash and a bucket. An entry exists
%% only while the connection has an owner and no handover is in progress
%% (#conn.hold): set when it is opened (do_connect/5) and when a hold ends
%% (end_hold/3), removed by disown/3 (detach/3, handover, closed). Without
%% an entry, deliver/7 looks in #state.conns as before (holds, drops), so a
%% missing entry is only slower, never wrong. Keys are the integer ids:
%% nothing else in this process's dictionary is an integer.
route(Id, Owner) ->
    _ = put(Id, Owner),
    ok.

unroute(Id) ->
    _ = erase(Id),
    ok.

%% One connection of an owner that died (already out of #state.owners).
owner_down(Id, Pid, #state{conns = Conns} = State) ->
    case Conns of
        #{Id := #conn{owner = Pid} = C} ->
            command(State#state.port, ws_port_proto:close_cmd(Id, 1001, <<"owner exited">>)),
            {C2, State2} = detach(C, no_reply, State),
            State2#state{conns = Conns#{Id := C2}};
        _ ->
            State
    end.

guard_timer(Id, Timeout) ->
    erlang:start_timer(Timeout + ?CONNECT_GUARD_MS, self(), {connect_timeout, Id}).

%% After a down event: the next attempt starts after Delay.
retry_guard(Id, #conn{connect_timeout = Timeout, timer = TRef}, Delay) ->
    cancel_timer(TRef),
    case Delay of
        manual -> undefined;
        _ when is_integer(Delay) -> guard_timer(Id, Timeout + Delay);
        _ -> guard_timer(Id, Timeout)
    end.

cancel_timer(undefined) -> ok;
cancel_timer(probe) -> ok;
cancel_timer(TRef) -> _ = erlang:cancel_timer(TRef, [{async, true}, {info, false}]), ok.

%% A connection's guard fired: nothing from the port program about it for
%% connect_timeout (+ delay) + 3 s. The program enforces connect_timeout
%% itself, so it is late, not the connection: ask the program about this
%% connection (`{stats, Id}'). Its answer says it is alive and still has
%% the connection (probe_answered/3), or that it lost it (`unknown_id',
%% see event/2). One deadline covers all the probes out.
guard_fired(Id, C, #state{conns = Conns, probe = Probe} = State) ->
    command(State#state.port, ws_port_proto:stats_cmd(Id)),
    State2 = State#state{conns = Conns#{Id := C#conn{timer = probe, stats = C#conn.stats ++ [probe]}}},
    case Probe of
        undefined ->
            TRef = erlang:start_timer(?PROBE_TIMEOUT_MS, self(), probe_timeout),
            {Out, Cpu} = progress(State),
            State2#state{probe = TRef, probe_mark = {Out, Cpu, 0}};
        _ ->
            State2
    end.

%% The program answered a connection's probe: it is alive, only slow, and
%% has the connection. Its guard starts again (unless an event about it
%% came meanwhile and set it already).
probe_answered(Id, #conn{timer = probe} = C, State) ->
    C2 = C#conn{timer = guard_timer(Id, C#conn.connect_timeout)},
    State#state{conns = (State#state.conns)#{Id := C2}};
probe_answered(Id, C, State) ->
    State#state{conns = (State#state.conns)#{Id := C}}.

%% No answer within ?PROBE_TIMEOUT_MS. A program that wrote anything since
%% (events: it is working through a backlog, the answer is queued behind
%% it) is given another period, and so is one that used CPU time (busy in
%% one long loop turn), up to ?PROBE_BUSY_MAX periods in a row; stopped,
%% blocked or gone, it is hung.
%% (With no probe unanswered any more, the deadline just ends.)
probe_late(#state{probe_mark = {Out0, Cpu0, Busy}, conns = Conns} = State) ->
    case probes_out(maps:iterator(Conns)) of
        false ->
            State#state{probe = undefined};
        true ->
            {Out, Cpu} = progress(State),
            Ran = is_integer(Cpu) andalso is_integer(Cpu0) andalso Cpu > Cpu0,
            if
                Out > Out0 -> extend_probe({Out, Cpu, 0}, State);
                Ran andalso Busy < ?PROBE_BUSY_MAX -> extend_probe({Out, Cpu, Busy + 1}, State);
                true -> probe_unanswered(State#state{probe = undefined})
            end
    end.

%% Whether a connection waits for the answer to its probe.
probes_out(Iter) ->
    case maps:next(Iter) of
        none -> false;
        {_Id, #conn{timer = probe, owner = Owner}, _} when is_pid(Owner) -> true;
        {_Id, _C, Next} -> probes_out(Next)
    end.

extend_probe(Mark, State) ->
    ?LOG_INFO("ws_port: the port program is slow to answer (busy); its connections wait on"),
    TRef = erlang:start_timer(?PROBE_TIMEOUT_MS, self(), probe_timeout),
    State#state{probe = TRef, probe_mark = Mark}.

%% What the program has done so far: the bytes the driver read from it
%% (its stdout and events socket), and its CPU time in clock ticks where
%% /proc tells (undefined elsewhere).
progress(#state{port = Port, events = Events}) ->
    In =
        case erlang:port_info(Port, input) of
            {input, N} -> N;
            undefined -> 0
        end,
    Recv =
        case Events =/= undefined andalso inet:getstat(Events, [recv_oct]) of
            {ok, [{recv_oct, R}]} -> R;
            _ -> 0
        end,
    {In + Recv, cpu_ticks(Port)}.

cpu_ticks(Port) ->
    case erlang:port_info(Port, os_pid) of
        {os_pid, Pid} when is_integer(Pid) ->
            case file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/stat") of
                {ok, Stat} ->
                    %% "pid (comm) state ppid ...": utime and stime are the
                    %% 14th and 15th fields, the 12th and 13th after comm
                    case string:split(Stat, ")", trailing) of
                        [_, Rest] -> stat_ticks(string:lexemes(Rest, " "));
                        _ -> undefined
                    end;
                _ ->
                    undefined
            end;
        _ ->
            undefined
    end.

stat_ticks(F) when length(F) >= 13 ->
    try
        binary_to_integer(lists:nth(12, F)) + binary_to_integer(lists:nth(13, F))
    catch
        error:badarg -> undefined
    end;
stat_ticks(_) ->
    undefined.

%% No sign of life: the program is hung. Each connection
%% waiting on the probe ends with timeout, once, as its owner was promised
%% (an awaited connect returns {error, timeout}); if the program wakes up,
%% their close commands end them there too.
probe_unanswered(#state{conns = Conns} = State) ->
    Late = maps:fold(
        fun
            (Id, #conn{timer = probe, owner = Owner}, Acc) when is_pid(Owner) -> [Id | Acc];
            (_Id, _C, Acc) -> Acc
        end,
        [],
        Conns
    ),
    case Late of
        [] ->
            ok;
        _ ->
            ?LOG_WARNING(
                "ws_port: the port program did not answer for ~b ms; ~b connections end with timeout",
                [?PROBE_TIMEOUT_MS, length(Late)]
            )
    end,
    lists:foldl(fun(Id, S) -> guard_timeout(Id, maps:get(Id, S#state.conns), S) end, State, Late).

guard_timeout(Id, C, #state{conns = Conns} = State) ->
    State2 = finish(Id, C, timeout, State),
    command(State#state.port, ws_port_proto:close_cmd(Id, 1001, <<"connect timeout">>)),
    ok = closed_telemetry(C, timeout),
    {C2, State3} = detach(
        C#conn{timer = undefined, from = undefined, final = true, stats = []}, no_reply, State2
    ),
    State3#state{conns = Conns#{Id := C2}}.

%% Stops delivering to the owner of a connection (closed by the user, owner
%% dead, connect abandoned). The id stays reserved until the port says
%% `closed'. A waiting connect caller gets Reply.
detach(#conn{handle = {ws_port, Key, Id}, owner = Owner, from = From, timer = TRef} = C, Reply, State) ->
    case {From, Reply} of
        {undefined, _} -> ok;
        {_, no_reply} -> ok;
        _ -> gen_server:reply(From, Reply)
    end,
    cancel_timer(TRef),
    _ = ets:update_element(?WS_PORT_TAB, {Key, Id}, {3, closing}),
    {C#conn{owner = undefined, from = undefined, timer = undefined}, disown(Owner, Id, State)}.

%% The connection is gone for good (or its connect was abandoned): tell
%% whoever waits.
finish(Id, #conn{from = From, stats = Waiting, handle = Handle} = C, Reason, State) ->
    _ = [gen_server:reply(W, {error, closed}) || W <- Waiting, W =/= probe],
    case From of
        undefined ->
            emit(Id, C, {ws_port_closed, Handle, Reason}, State);
        _ ->
            gen_server:reply(From, {error, Reason}),
            State
    end.

%% Sends a message to the owner of a connection, or holds it back during a
%% handover. Nothing is sent once the connection is detached.
emit(_Id, #conn{owner = Owner, hold = false}, Msg, State) when is_pid(Owner) ->
    Owner ! Msg,
    State;
emit(Id, #conn{owner = Owner, hold = true}, Msg, #state{held = Held} = State) when
    is_pid(Owner)
->
    #{Id := #hold{buf = Buf} = H} = Held,
    State#state{held = Held#{Id := H#hold{buf = [Msg | Buf]}}};
emit(_Id, #conn{}, _Msg, State) ->
    State.

%%====================================================================
%% Handover (controlling_process)
%%====================================================================

%% The caller (the current owner) gives the connection to NewOwner and will
%% forward what is in its mailbox, then release: until then, hold.
hand_over(Id, #conn{owner = OldOwner} = C, NewOwner, State0) ->
    State = own(NewOwner, Id, disown(OldOwner, Id, State0)),
    #state{conns = Conns, held = Held} = State,
    HoldRef = erlang:monitor(process, OldOwner, [{tag, {handover, Id}}]),
    C2 = C#conn{owner = NewOwner, hold = true},
    State#state{
        conns = Conns#{Id := C2},
        held = Held#{Id => #hold{from = OldOwner, ref = HoldRef, to = NewOwner}}
    }.

%% Held messages go to the new owner (also if the connection closed in the
%% meantime: they were sent before), then a handover it asked for meanwhile
%% starts (unless Continue is false: the driver is stopping).
end_hold(Id, Continue, #state{held = Held0, conns = Conns} = State) ->
    {#hold{ref = Ref, to = To, buf = Buf, next = Next}, Held} = maps:take(Id, Held0),
    demonitor(Ref, [flush]),
    lists:foreach(fun(Msg) -> To ! Msg end, lists:reverse(Buf)),
    State2 = State#state{held = Held},
    case Conns of
        #{Id := #conn{owner = To} = C} when Continue ->
            C2 = C#conn{hold = false},
            State3 = State2#state{conns = Conns#{Id := C2}},
            case Next of
                {From, NewOwner} ->
                    gen_server:reply(From, ok),
                    hand_over(Id, C2, NewOwner, State3);
                undefined ->
                    route(Id, To),
                    State3
            end;
        #{Id := C} ->
            reply_next(Next, {error, closed}),
            State2#state{conns = Conns#{Id := C#conn{hold = false}}};
        _ ->
            reply_next(Next, {error, closed}),
            State2
    end.

reply_next(undefined, _) -> ok;
reply_next({From, _}, Reply) -> gen_server:reply(From, Reply).

end_all_holds(#state{held = Held} = State) ->
    lists:foldl(fun(Id, S) -> end_hold(Id, false, S) end, State, maps:keys(Held)).

%% Data messages the deliver loop held back, in order.
hold_messages([], State) ->
    State;
hold_messages([{Id, Msg} | Rest], #state{conns = Conns} = State) ->
    #{Id := C} = Conns,
    hold_messages(Rest, emit(Id, C, Msg, State)).

%%====================================================================
%% Events from the port
%%====================================================================

%% The hot path: deliver every message of a data packet, in order, caching
%% the owner of the last id seen. Payloads are sub-binaries of the packet.
%% The owner comes from the route (route/2, the process dictionary); a
%% connection without one is looked up in Conns: messages for a connection
%% in handover are returned (newest first) to be held, those of a detached
%% or unknown one dropped. The cache only ever holds an owner that gets
%% messages directly.
deliver(<<Id:32, Op, Len:32, Payload:Len/binary, Rest/binary>>, Id, Owner, Key, Handle, Conns, Held) when
    is_pid(Owner)
->
    Owner ! {ws_port, Handle, frame(Op, Payload)},
    deliver(Rest, Id, Owner, Key, Handle, Conns, Held);
deliver(<<Id:32, Op, Len:32, Payload:Len/binary, Rest/binary>>, _, _, Key, _, Conns, Held) ->
    case get(Id) of
        Owner when is_pid(Owner) ->
            Handle = {ws_port, Key, Id},
            Owner ! {ws_port, Handle, frame(Op, Payload)},
            deliver(Rest, Id, Owner, Key, Handle, Conns, Held);
        undefined ->
            case Conns of
                #{Id := #conn{owner = Owner, handle = Handle, hold = false}} when is_pid(Owner) ->
                    Owner ! {ws_port, Handle, frame(Op, Payload)},
                    deliver(Rest, Id, Owner, Key, Handle, Conns, Held);
                #{Id := #conn{owner = Owner, handle = Handle}} when is_pid(Owner) ->
                    Msg = {ws_port, Handle, frame(Op, Payload)},
                    deliver(Rest, 0, undefined, Key, undefined, Conns, [{Id, Msg} | Held]);
                _ ->
                    %% closed by the user or unknown: dropped
                    deliver(Rest, 0, undefined, Key, undefined, Conns, Held)
            end
    end;
deliver(<<>>, _, _, _, _, _, Held) ->
    Held;
deliver(Bad, _, _, _, _, _, Held) ->
    ?LOG_WARNING("ws_port: malformed data packet from the port program: ~P", [Bad, 20]),
    Held.

-compile({inline, [frame/2]}).
frame(1, Payload) -> {text, Payload};
frame(_, Payload) -> {binary, Payload}.

event({up, Id, Info}, #state{conns = Conns} = State) ->
    case Conns of
        #{Id := #conn{owner = Owner} = C} when is_pid(Owner) ->
            #conn{handle = {ws_port, Key, _} = Handle, from = From} = C,
            cancel_timer(C#conn.timer),
            _ = ets:update_element(?WS_PORT_TAB, {Key, Id}, {3, open}),
            State2 =
                case From of
                    undefined when C#conn.notify_up ->
                        emit(Id, C, {ws_port_up, Handle, Info}, State);
                    undefined ->
                        State;
                    _ ->
                        gen_server:reply(From, {ok, Handle}),
                        State
                end,
            ws_port_telemetry:execute(
                [ws_port, connection, up],
                #{
                    count => 1,
                    attempt => C#conn.attempt + 1,
                    duration => erlang:monotonic_time() - C#conn.since
                },
                (metadata(C))#{
                    replay => C#conn.replayed,
                    tls_resumed => maps:get(tls_resumed, Info, undefined)
                }
            ),
            {Headers, State3} = intern_headers(maps:get(headers, Info, []), State2),
            C2 = (wake(C))#conn{
                from = undefined,
                notify_up = false,
                timer = undefined,
                protocol = maps:get(protocol, Info, undefined),
                headers = Headers,
                attempt = 0,
                ups = C#conn.ups + 1,
                %% a successful reconnect: the retry_fun starts afresh
                retry_state = C#conn.retry_init
            },
            State3#state{conns = Conns#{Id := C2}};
        _ ->
            State
    end;
event({closed, Id, Reason}, #state{key = Key, conns = Conns} = State) ->
    case maps:take(Id, Conns) of
        {C0, Conns2} ->
            C = wake(C0),
            State2 = disown(C#conn.owner, Id, finish(Id, C, Reason, State)),
            cancel_timer(C#conn.timer),
            true = ets:delete(?WS_PORT_TAB, {Key, Id}),
            case C#conn.final of
                true -> ok;
                false -> closed_telemetry(C, Reason)
            end,
            State2#state{conns = Conns2};
        error ->
            State
    end;
event({down, Id, Reason, Info}, #state{conns = Conns} = State) when is_map(Info) ->
    case Conns of
        #{Id := #conn{owner = Owner, from = undefined} = C} when is_pid(Owner) ->
            Attempt = attempt_of(Info, C),
            %% a down with a delay already chosen (ws_port:reconnect/2 on an
            %% open connection) is not the retry_fun's to answer
            case {C#conn.retry, maps:get(delay_ms, Info, manual)} of
                {callback, manual} ->
                    ask_retry_fun(Id, C#conn{attempt = Attempt}, Reason, Info, State);
                _ ->
                    retrying(Id, C#conn{attempt = Attempt}, Reason, Info, State)
            end;
        #{Id := #conn{owner = Owner} = C} when is_pid(Owner) ->
            %% the first attempt of an awaited connect failed: the caller
            %% gets {error, Reason} (from finish/4), no retries
            give_up(Id, C, Reason, State);
        _ ->
            State
    end;
event({busy, Id}, #state{key = Key} = State) ->
    %% senders wait (ws_port:send/2 -> await_ready/2) until {ready, Id}
    _ = ets:select_replace(?WS_PORT_TAB, [
        {{{Key, Id}, '$1', open, '$2', '$3', '$4'}, [], [{{{{Key, Id}}, '$1', busy, '$2', '$3', '$4'}}]}
    ]),
    State;
event({ready, Id}, #state{key = Key, conns = Conns} = State) ->
    _ = ets:select_replace(?WS_PORT_TAB, [
        {{{Key, Id}, '$1', busy, '$2', '$3', '$4'}, [], [{{{{Key, Id}}, '$1', open, '$2', '$3', '$4'}}]}
    ]),
    case Conns of
        #{Id := C} -> State#state{conns = Conns#{Id := wake(C)}};
        _ -> State
    end;
event({passive, Id}, State) ->
    to_owner(Id, fun(H) -> {ws_port_passive, H} end, State);
event({pong, Id, Rtt}, State) ->
    to_owner(Id, fun(H) -> {ws_port_pong, H, Rtt} end, State);
event({stats, 0, Stats}, #state{pstats = [From | Waiting], conns = Conns} = State) when
    is_map(Stats)
->
    gen_server:reply(From, {ok, Stats#{driver_connections => map_size(Conns)}}),
    State#state{pstats = Waiting};
event({stats, Id, Stats}, #state{conns = Conns} = State) when is_map(Stats) ->
    case Conns of
        #{Id := #conn{stats = [probe | Waiting]} = C} ->
            probe_answered(Id, C#conn{stats = Waiting}, State);
        #{Id := #conn{stats = [From | Waiting]} = C} ->
            #conn{handle = {ws_port, Key, _}, url = Url, owner = Owner} = C,
            %% the port's counters start again if the port program
            %% restarts; reconnects is counted here, across restarts
            Info = Stats#{
                id => Id,
                url => Url,
                driver => Key,
                owner => Owner,
                reconnects => max(C#conn.ups - 1, 0),
                protocol => C#conn.protocol,
                headers => C#conn.headers,
                proxy => C#conn.proxy
            },
            gen_server:reply(From, {ok, Info}),
            State#state{conns = Conns#{Id := C#conn{stats = Waiting}}};
        _ ->
            State
    end;
event({error, Id, {What, Detail}} = Event, #state{conns = Conns} = State) ->
    case Conns of
        #{Id := #conn{}} when What =:= bad_option ->
            %% the port refused the connect itself: it never had this id
            event({closed, Id, {What, Detail}}, State);
        #{Id := #conn{owner = undefined}} when What =:= unknown_id ->
            %% a connection we gave up on that the port no longer knows
            event({closed, Id, closed}, State);
        #{Id := #conn{}} when What =:= unknown_id ->
            %% The program has lost a connection it never reported closed
            %% (a bug in it; the answer to the guard's probe, to info/2 or
            %% to a send): no event will ever come for it. Its one final
            %% outcome, as if the program had closed it.
            ?LOG_ERROR(
                "ws_port: the port program lost connection ~b (~0p); it ends with port_lost_connection",
                [Id, Detail]
            ),
            event({closed, Id, {port_lost_connection, Detail}}, State);
        #{Id := #conn{handle = Handle} = C} ->
            emit(Id, C, {ws_port_error, Handle, {What, Detail}}, State);
        _ when What =:= unknown_id; What =:= not_connected ->
            %% a send that raced the connection's end
            ?LOG_DEBUG("ws_port: ~p", [Event]),
            State;
        _ ->
            ?LOG_WARNING("ws_port: the port program refused a command: ~p", [Event]),
            State
    end;
event(Event, State) ->
    ?LOG_WARNING("ws_port: unknown event from the port program: ~P", [Event, 20]),
    State.

to_owner(Id, Msg, #state{conns = Conns} = State) ->
    case Conns of
        #{Id := #conn{handle = Handle} = C} -> emit(Id, C, Msg(Handle), State);
        _ -> State
    end.

attempt_of(#{attempt := A}, _C) when is_integer(A), A > 0 -> A;
attempt_of(_Info, #conn{attempt = A}) -> A + 1.

%% The connection was lost and the port program will try again after
%% Info's delay_ms (or, in manual mode, once told so).
retrying(Id, C, Reason, Info, #state{conns = Conns} = State) ->
    #conn{handle = {ws_port, Key, _} = Handle} = C,
    Delay = maps:get(delay_ms, Info, undefined),
    _ = ets:update_element(?WS_PORT_TAB, {Key, Id}, {3, connecting}),
    ok = down_telemetry(C, Reason, Info),
    State2 = emit(Id, C, {ws_port_down, Handle, Reason, down_info(Info, C)}, State),
    C2 = (wake(C))#conn{
        timer = retry_guard(Id, C, Delay),
        since = erlang:monotonic_time(),
        notify_up = true,
        protocol = undefined,
        headers = undefined
    },
    State2#state{conns = Conns#{Id := C2}}.

%% Lets the senders waiting on a busy connection look at it again.
wake(#conn{waiting = []} = C) ->
    C;
wake(#conn{waiting = W} = C) ->
    _ = [gen_server:reply(From, ok) || From <- W],
    C#conn{waiting = []}.

%% What the owner gets as the Info of ws_port_down.
down_info(Info, #conn{attempt = A}) ->
    #{
        attempt => A,
        delay_ms => maps:get(delay_ms, Info, manual),
        unsent_bytes => maps:get(unsent_bytes, Info, 0)
    }.

%% retry_fun: the driver decides for the port (in manual mode).
ask_retry_fun(Id, #conn{retry_fun = Fun, retry_state = RS, handle = Handle} = C, Reason, Info, State) ->
    case ws_port_retry:next(Fun, RS) of
        {ok, Delay, Next} ->
            command(State#state.port, ws_port_proto:reconnect_cmd(Id, Delay)),
            retrying(Id, C#conn{retry_state = Next}, Reason, Info#{delay_ms => Delay}, State);
        stop ->
            give_up(Id, C, Reason, State);
        {error, Why} ->
            ?LOG_WARNING(
                "ws_port: retry_fun of ~p (~p) failed on state ~P: ~P; not retrying",
                [Handle, C#conn.url, RS, 20, Why, 30]
            ),
            give_up(Id, C, Reason, State)
    end.

%% No more attempts after a failure: the owner gets ws_port_closed with
%% the failure's reason (or a waiting connect caller {error, Reason}), the
%% port is told to close the connection (its
%% closed event is then only bookkeeping).
give_up(Id, #conn{} = C, Reason, #state{conns = Conns} = State) ->
    State2 = finish(Id, C, Reason, State),
    command(State#state.port, ws_port_proto:close_cmd(Id, 1000, <<>>)),
    ok = closed_telemetry(C, Reason),
    {C2, State3} = detach(C#conn{final = true, stats = []}, no_reply, State2),
    State3#state{conns = Conns#{Id := C2}}.

down_telemetry(C, Reason, Info) ->
    Attempt = C#conn.attempt,
    Delay = maps:get(delay_ms, Info, manual),
    Meta = (metadata(C))#{
        reason => Reason,
        attempt => Attempt,
        delay_ms => Delay,
        unsent_bytes => maps:get(unsent_bytes, Info, 0),
        info => Info
    },
    ws_port_telemetry:execute(
        [ws_port, connection, down],
        #{count => 1, duration => erlang:monotonic_time() - C#conn.since},
        Meta
    ),
    case Delay of
        D when is_integer(D) ->
            ws_port_telemetry:execute(
                [ws_port, connection, retry],
                #{delay_ms => D},
                (metadata(C))#{reason => Reason, attempt => Attempt}
            );
        _ ->
            ok
    end,
    idle_telemetry(C, Reason).

closed_telemetry(C, Reason) ->
    ws_port_telemetry:execute(
        [ws_port, connection, closed],
        #{count => 1, duration => erlang:monotonic_time() - C#conn.since},
        (metadata(C))#{reason => Reason}
    ),
    idle_telemetry(C, Reason).

idle_telemetry(C, idle_timeout) ->
    ws_port_telemetry:execute([ws_port, connection, idle_timeout], #{count => 1}, metadata(C));
idle_telemetry(_C, _Reason) ->
    ok.

metadata(#conn{handle = {ws_port, Key, Id} = Handle, url = Url}) ->
    #{conn => Handle, driver => Key, id => Id, url => Url}.

%%====================================================================
%% The port program
%%====================================================================

port_program(Opts) ->
    case proplists:get_value(port_program, Opts) of
        undefined ->
            case application:get_env(ws_port, port_program) of
                {ok, Path} -> Path;
                undefined -> filename:join(priv_dir(), "ws_port")
            end;
        Path ->
            Path
    end.

priv_dir() ->
    case code:priv_dir(ws_port) of
        {error, bad_name} ->
            %% not loaded as an application (e.g. bare code path)
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

open(Program, UseSocket, Ns) ->
    case filelib:is_regular(Program) of
        false ->
            {error, {no_port_program, Program}};
        true ->
            case open_with(Program, UseSocket, Ns) of
                {error, {events_socket, no_abstract}} when Ns =:= abstract ->
                    %% a portable build of the program (make WSP_PORTABLE=1):
                    %% a filesystem socket from now on (restarts too)
                    open(Program, UseSocket, path);
                {error, {events_socket, Why}} ->
                    %% the socket is only faster: never a reason not to run
                    ?LOG_WARNING("ws_port: events socket failed (~p): events come on stdout", [Why]),
                    open_with(Program, false, Ns);
                Other ->
                    Other
            end
    end.

open_with(Program, UseSocket, Ns) ->
    {Listen, Args} = events_listen(UseSocket, Ns),
    try
        open_port({spawn_executable, Program}, [
            {args, Args}, {packet, 4}, binary, exit_status, use_stdio
        ])
    of
        Port ->
            case events_accept(Port, Listen) of
                {ok, Port, Events} -> {ok, Port, Events, Ns};
                Error -> Error
            end
    catch
        error:Reason ->
            close_listen(Listen),
            {error, {port_program, Program, Reason}}
    end.

%% Where the events socket goes: Linux has the abstract namespace (nothing
%% left on disk); elsewhere a filesystem path.
default_events_ns() ->
    case os:type() of
        {unix, linux} -> abstract;
        _ -> path
    end.

%% The events socket: a unix socket named for this OS process, a unique
%% integer and random bytes, in the abstract namespace or, with `path', in a
%% new directory of its own (mode 0700, under $TMPDIR or /tmp) removed once
%% the program has connected. If it cannot be made (disabled, no room),
%% events come on stdout. Returns {Listen, ProgramArgs}; Listen is
%% {Socket, Dir | undefined} or undefined.
events_listen(true, Ns) ->
    Name = iolist_to_binary([
        "ws_port.", os:getpid(), $., integer_to_list(erlang:unique_integer([positive])), $.,
        binary:encode_hex(rand:bytes(6))
    ]),
    case events_address(Ns, Name) of
        {ok, Addr, Arg, Dir} ->
            Opts = [
                {ifaddr, {local, Addr}}, binary, {packet, 4}, {active, false}, {backlog, 64}
            ],
            case gen_tcp:listen(0, Opts) of
                {ok, L} ->
                    {{L, Dir}, ["port", "--events-socket", Arg]};
                {error, Reason} ->
                    remove_dir(Dir),
                    ?LOG_WARNING("ws_port: no events socket (~p): events come on stdout", [Reason]),
                    {undefined, ["port"]}
            end;
        {error, Reason} ->
            ?LOG_WARNING("ws_port: no events socket (~p): events come on stdout", [Reason]),
            {undefined, ["port"]}
    end;
events_listen(_, _) ->
    %% "port": the program then answers anything on stdin in the protocol
    %% (without it, input that is not {packet,4} commands gets a usage note)
    {undefined, ["port"]}.

events_address(abstract, Name) ->
    {ok, <<0, Name/binary>>, <<$@, Name/binary>>, undefined};
events_address(path, Name) ->
    case private_dir(Name) of
        {ok, Dir} ->
            Path = filename:join(Dir, "ev"),
            {ok, Path, Path, Dir};
        {error, _} = E ->
            E
    end.

%% A new directory only we can enter: make_dir fails if the name exists
%% (nobody can slip one in first), the mode is set before the socket is made.
private_dir(Name) ->
    Base =
        case os:getenv("TMPDIR") of
            T when is_list(T), T =/= "" -> T;
            _ -> "/tmp"
        end,
    %% the socket path must fit in sun_path: long $TMPDIRs (macOS) give way
    Dir0 = filename:join(Base, binary_to_list(Name)),
    Dir =
        case length(Dir0) + 3 > ?MAX_SOCKET_PATH of
            true -> filename:join("/tmp", "wsp." ++ binary_to_list(binary:encode_hex(rand:bytes(8))));
            false -> Dir0
        end,
    case file:make_dir(Dir) of
        ok ->
            case file:change_mode(Dir, 8#700) of
                ok ->
                    {ok, Dir};
                {error, _} = E ->
                    _ = file:del_dir(Dir),
                    E
            end;
        {error, Why} ->
            {error, {Dir, Why}}
    end.

remove_dir(undefined) ->
    ok;
remove_dir(Dir) ->
    _ = file:delete(filename:join(Dir, "ev")),
    _ = file:del_dir(Dir),
    ok.

close_listen(undefined) ->
    ok;
close_listen({L, Dir}) ->
    gen_tcp:close(L),
    remove_dir(Dir).

%% The program's first packet says whether it reached the socket; then the
%% connection is accepted, and taken only from the program itself or a
%% process it started (peer credentials: the OS pid; where the OS gives no
%% pid, the user: see peer_ok/3). Anything else (a stranger in the queue, a
%% program too slow to say hello) ends with {error, {events_socket, _}} and
%% the program closed; {hello, no_abstract} (a build of the program without
%% abstract socket names) with {error, {events_socket, no_abstract}}.
events_accept(Port, undefined) ->
    {ok, Port, undefined};
events_accept(Port, {L, Dir} = Listen) ->
    Deadline = erlang:monotonic_time(millisecond) + ?EVENTS_ACCEPT_MS,
    R =
        receive
            {Port, {data, <<131, _/binary>> = Hello}} ->
                case {catch binary_to_term(Hello), erlang:port_info(Port, os_pid)} of
                    {{hello, socket}, {os_pid, OsPid}} when is_integer(OsPid) ->
                        accept_from(L, Dir, OsPid, Deadline);
                    {{hello, stdout}, _} ->
                        %% the program could not connect (it said why on stderr)
                        stdout;
                    {{hello, no_abstract}, _} ->
                        {error, no_abstract};
                    Other ->
                        {error, {bad_hello, Other}}
                end;
            {Port, {exit_status, Status}} ->
                {exit, Status}
        after ?EVENTS_ACCEPT_MS ->
            {error, timeout}
        end,
    close_listen(Listen),
    case R of
        {ok, S} ->
            _ = inet:setopts(S, [{active, ?EVENTS_ACTIVE}, {buffer, ?EVENTS_BUFFER}]),
            {ok, Port, S};
        stdout ->
            ?LOG_WARNING("ws_port: events socket not reached: events come on stdout"),
            {ok, Port, undefined};
        {exit, St} ->
            {error, {port_exit, St}};
        {error, Why} ->
            catch port_close(Port),
            {error, {events_socket, Why}}
    end.

accept_from(Listen, Dir, OsPid, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    case gen_tcp:accept(Listen, Left) of
        {ok, S} ->
            case peer_ok(S, Dir, OsPid) of
                true ->
                    {ok, S};
                false ->
                    %% someone else found the name: not ours to read
                    gen_tcp:close(S),
                    accept_from(Listen, Dir, OsPid, Deadline)
            end;
        {error, _} = E ->
            E
    end.

%% Linux (abstract name or path): SO_PEERCRED's pid is the program or a
%% descendant. macOS and the BSDs (always a path): LOCAL_PEERCRED's uid
%% (what getpeereid(3) reads) owns the private directory, i.e. is ours; if
%% the OS refuses the option, the directory's mode 0700 already kept other
%% users out (root aside).
peer_ok(S, Dir, OsPid) ->
    case os:type() of
        {unix, linux} ->
            case inet:getopts(S, [{raw, ?SOL_SOCKET, ?SO_PEERCRED, 12}]) of
                {ok, [{raw, _, _, <<Peer:32/native, _/binary>>}]} when Peer > 0 ->
                    descends_from(Peer, OsPid, 4);
                _ ->
                    false
            end;
        _ when Dir =/= undefined ->
            Owner =
                case file:read_file_info(Dir) of
                    {ok, #file_info{uid = U}} -> U;
                    _ -> undefined
                end,
            case inet:getopts(S, [{raw, ?SOL_LOCAL, ?LOCAL_PEERCRED, ?XUCRED_SIZE}]) of
                {ok, [{raw, _, _, <<_Version:32/native, Uid:32/native, _/binary>>}]} ->
                    Uid =:= Owner;
                _ ->
                    is_integer(Owner)
            end;
        _ ->
            false
    end.

%% Pid is OsPid, or its child, grandchild... up to Depth levels (a wrapper
%% script as port_program runs the real program as its child).
descends_from(OsPid, OsPid, _Depth) ->
    true;
descends_from(_Pid, _OsPid, 0) ->
    false;
descends_from(Pid, OsPid, Depth) ->
    case file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/stat") of
        {ok, Stat} ->
            %% "pid (comm) state ppid ...": comm may hold spaces and ')'
            [_, Rest] = string:split(Stat, ")", trailing),
            case string:lexemes(Rest, " ") of
                [_State, PPid | _] -> descends_from(binary_to_integer(PPid), OsPid, Depth - 1);
                _ -> false
            end;
        _ ->
            false
    end.

close_events(undefined) -> ok;
close_events(Sock) -> gen_tcp:close(Sock).

%% A command to the port. If the port is dead, its exit_status message is on
%% its way and the restart replays what matters.
command(Port, Data) ->
    try
        true = erlang:port_command(Port, Data),
        ok
    catch
        error:badarg -> ok
    end.

port_exited(Status, State0) ->
    #state{restarts = Restarts0, conns = Conns} = State = drain_events(State0),
    Now = erlang:monotonic_time(millisecond),
    Restarts = [T || T <- [Now | Restarts0], Now - T < ?RESTART_PERIOD_MS],
    case length(Restarts) > ?MAX_RESTARTS of
        true ->
            ?LOG_ERROR("ws_port: port program exited with status ~p, too many restarts", [Status]),
            stop_all(Status, State);
        false ->
            ?LOG_WARNING("ws_port: port program exited with status ~p, restarting it (~b connections)",
                         [Status, map_size(Conns)]),
            %% the new program never heard those questions
            _ = [gen_server:reply(W, {error, port_exit}) || W <- State#state.pstats],
            %% the replay below arms every connection's guard afresh
            cancel_timer(State#state.probe),
            #state{program = Program, use_socket = UseSocket, events_ns = Ns0} = State,
            case open(Program, UseSocket, Ns0) of
                {ok, Port, Events, Ns} ->
                    State2 = State#state{
                        port = Port,
                        events = Events,
                        events_ns = Ns,
                        restarts = Restarts,
                        pstats = [],
                        probe = undefined
                    },
                    {noreply, replay(Status, State2)};
                {error, Reason} ->
                    ?LOG_ERROR("ws_port: cannot restart the port program: ~p", [Reason]),
                    stop_all(Status, State)
            end
    end.

%% What the program wrote before it exited still counts (its last events: a
%% connection closed for good, an error it reported): the events socket is
%% read to its end before the restart replays anything. (On stdout, those
%% events came before exit_status anyway.)
drain_events(#state{events = undefined} = State) ->
    State;
drain_events(#state{events = S} = State) ->
    State2 = drain_mailbox(S, State),
    _ = inet:setopts(S, [{active, false}]),
    drain_socket(S, drain_mailbox(S, State2)).

drain_mailbox(S, State) ->
    receive
        {tcp, S, Packet} ->
            {noreply, State2} = packet(Packet, State),
            drain_mailbox(S, State2)
    after 0 -> State
    end.

drain_socket(S, State) ->
    case gen_tcp:recv(S, 0, ?EVENTS_DRAIN_MS) of
        {ok, Packet} ->
            {noreply, State2} = packet(Packet, State),
            drain_socket(S, State2);
        {error, _} ->
            close_events(S),
            State#state{events = undefined}
    end.

stop_all(Status, State) ->
    #state{key = Key, conns = Conns} = State2 = end_all_holds(State),
    State3 = maps:fold(
        fun(Id, C, S) ->
            true = ets:delete(?WS_PORT_TAB, {Key, Id}),
            finish(Id, C, {port_exit, Status}, S)
        end,
        State2,
        Conns
    ),
    {stop, {port_exit, Status}, State3#state{conns = #{}}}.

%% Re-issue connect for every connection the dead port carried.
replay(Status, #state{conns = Conns} = State) ->
    maps:fold(fun(Id, C, S) -> replay_one(Id, C, Status, S) end, State#state{conns = #{}}, Conns).

replay_one(Id, #conn{owner = undefined} = C, _Status, #state{key = Key} = State) ->
    %% closed or abandoned: nothing to come back to
    true = ets:delete(?WS_PORT_TAB, {Key, Id}),
    finish(Id, C, closed, State);
replay_one(Id, #conn{} = C, Status, #state{key = Key, port = Port} = State) ->
    Active =
        case ets:lookup(?WS_PORT_TAB, {Key, Id}) of
            [{_, _, _, A, _, _}] -> A;
            [] -> proplists:get_value(active, C#conn.wire, true)
        end,
    Wire = lists:keystore(active, 1, C#conn.wire, {active, Active}),
    command(Port, ws_port_proto:connect_cmd(Id, C#conn.url, Wire)),
    true = ets:insert(?WS_PORT_TAB, {{Key, Id}, Port, connecting, Active, queues(Wire), max_size(Wire)}),
    %% the callers of info/2 ask the new program (the guard's probes do
    %% not: the guard starts afresh)
    Stats = [W || W <- C#conn.stats, W =/= probe],
    [command(Port, ws_port_proto:stats_cmd(Id)) || _ <- Stats],
    State2 =
        %% every connection whose owner holds a handle hears of the restart
        %% (not only open ones): its credit is what was last given, and an
        %% owner counting credit (WsPort.ProducerCore) must resync
        case C#conn.from =:= undefined of
            true ->
                Reason = {port_exit, Status},
                Info = #{attempt => 1, delay_ms => 0, unsent_bytes => 0},
                ok = down_telemetry(C#conn{attempt = 1}, Reason, Info),
                emit(Id, C, {ws_port_down, C#conn.handle, Reason, Info}, State);
            false ->
                State
        end,
    cancel_timer(C#conn.timer),
    C2 = (wake(C))#conn{
        notify_up = C#conn.from =:= undefined,
        stats = Stats,
        timer = guard_timer(Id, C#conn.connect_timeout),
        since = erlang:monotonic_time(),
        replayed = true,
        protocol = undefined,
        headers = undefined,
        attempt = 0
    },
    State2#state{conns = (State2#state.conns)#{Id => C2}}.
