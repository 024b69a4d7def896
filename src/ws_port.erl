%% @doc WebSocket client connections whose network, TLS and framing run in
%% the port program `priv/ws_port'. The API mirrors gen_tcp and ssl.
%%
%% A connection is owned by the process that opened it (see
%% {@link controlling_process/2}). The owner gets these messages:
%% <ul>
%% <li>`{ws_port, Conn, {text, Data}}' and `{ws_port, Conn, {binary, Data}}':
%%     one whole message, while the connection is active.</li>
%% <li>`{ws_port_passive, Conn}': the credit given with `{active, N}' is
%%     used up; nothing more is delivered (nor read from the socket) until
%%     {@link setopts/2}.</li>
%% <li>`{ws_port_pong, Conn, RttMicros}': the answer to a ping.</li>
%% <li>`{ws_port_closed, Conn, Reason}': the connection is gone for good
%%     (server close `{remote, Code, Text}', `eof', `idle_timeout',
%%     `{protocol_error, Code, Detail}', ... see docs/protocol.md). Not sent
%%     after {@link close/1}.</li>
%% <li>`{ws_port_down, Conn, Reason}' then, once it is back,
%%     `{ws_port_up, Conn, Info}' (same handle): the connection was lost and
%%     is being reopened, either by the port program (`retry' option; Reason
%%     as in `ws_port_closed') or because the port program died and was
%%     restarted (Reason `{port_exit, Status}'). Sends in between return
%%     `{error, not_connected}' unless `send_queue' is set. In manual retry
%%     mode the owner answers with {@link reconnect/2} or {@link close/1}.
%%     Each failed attempt of the port program's retries is one more
%%     `ws_port_down'.</li>
%% <li>`{ws_port_up, Conn, Info}' also when `await => false' was given to
%%     {@link connect/2}; a failed handshake is then `{ws_port_closed, Conn,
%%     Reason}'.</li>
%% <li>`{ws_port_error, Conn, {What, Detail}}': the port program refused a
%%     command for this connection (e.g. `not_connected').</li>
%% </ul>
-module(ws_port).

-include("ws_port_int.hrl").

-export([connect/1, connect/2]).
-export([send/2, close/1, close/3, setopts/2, controlling_process/2, info/1, reconnect/2]).

-export_type([conn/0, connect_opts/0, message/0, close_reason/0]).

-opaque conn() :: {ws_port, ws_port_driver:key(), ws_port_proto:id()}.

%% Options of connect/2, as a map or a proplist.
-type connect_opts() ::
    #{
        headers => [{header_part(), header_part()}],
        protocols => [binary() | string()],
        connect_timeout => pos_integer(),
        tls => tls_opts(),
        max_message_size => pos_integer(),
        active => ws_port_proto:active(),
        ping_interval => non_neg_integer(),
        idle_timeout => non_neg_integer(),
        driver => atom() | pid(),
        await => boolean(),
        retry => boolean() | retry_opts(),
        retry_on => [retry_class()],
        send_queue => non_neg_integer()
    }
    | proplists:proplist().
-type retry_opts() ::
    #{
        max_retries => non_neg_integer() | infinity,
        delay => non_neg_integer(),
        max_delay => non_neg_integer(),
        backoff_factor => number(),
        jitter => number(),
        manual => boolean()
    }
    | proplists:proplist().
-type retry_class() ::
    network
    | timeout
    | http_5xx
    | http_429
    | http_4xx
    | tls
    | protocol
    | remote_close
    | http_other.
-type header_part() :: binary() | string() | atom().
-type tls_opts() ::
    #{
        verify => verify_peer | verify_none,
        cacertfile => file:filename_all(),
        certfile => file:filename_all(),
        keyfile => file:filename_all(),
        server_name => binary() | string()
    }
    | proplists:proplist().

%% What send/2 takes.
-type message() :: {text | binary | ping | pong, iodata()}.

%% Why a connection ended or could not be opened (docs/protocol.md), or a
%% reason found on the BEAM side.
-type close_reason() ::
    {remote | local | protocol_error, integer(), binary()}
    | {http_status, integer(), [{binary(), binary()}]}
    | {bad_handshake | tls | invalid_url | socket, binary() | atom()}
    | {dns, nxdomain | binary()}
    | {bad_option, term()}
    | {bad_option, term(), term()}
    | {port_exit, integer()}
    | {driver_exit, term()}
    | {no_driver, atom() | pid()}
    | econnrefused
    | econnreset
    | ehostunreach
    | enetunreach
    | timeout
    | eof
    | idle_timeout
    | closed.

%%====================================================================
%% Connecting and closing
%%====================================================================

%% @equiv connect(Url, #{})
-spec connect(unicode:chardata()) -> {ok, conn()} | {error, close_reason()}.
connect(Url) ->
    connect(Url, #{}).

%% @doc Opens a WebSocket connection owned by the caller.
%%
%% `Url' is `ws://host[:port]/path' or `wss://...' (binary or string).
%% Options (a map or a proplist):
%% <ul>
%% <li>`headers': extra request headers, `[{Name, Value}]'.</li>
%% <li>`protocols': the `Sec-WebSocket-Protocol' offer.</li>
%% <li>`connect_timeout': ms for DNS, TCP, TLS and the upgrade together
%%     (default 15000).</li>
%% <li>`tls': `#{verify => verify_peer | verify_none, cacertfile, certfile,
%%     keyfile, server_name}' for wss (default: verify against the system CA
%%     store, name from the URL).</li>
%% <li>`max_message_size': bytes (the port's default is 64 MiB).</li>
%% <li>`active': `true' (default), `false', `once' or an integer, as
%%     gen_tcp.</li>
%% <li>`ping_interval', `idle_timeout': ms, 0 = off (default).</li>
%% <li>`retry': `false' (default), `true' (the port's default policy) or a
%%     map or proplist of `max_retries' (default `infinity'), `delay' (ms,
%%     1000), `max_delay' (ms, 30000), `backoff_factor' (2), `jitter' (0.1)
%%     and `manual' (false: the owner calls {@link reconnect/2} after each
%%     `ws_port_down'). The port program then reconnects by itself after
%%     failures of the classes in `retry_on' (default `[network, timeout,
%%     http_5xx, http_429, protocol, remote_close]'; also `http_4xx', `tls',
%%     `http_other').</li>
%% <li>`send_queue': up to N text/binary messages sent while the connection
%%     is not open are kept by the port and written after the next
%%     handshake (default 0: such sends return `{error, not_connected}').</li>
%% <li>`driver': a driver's registered name or pid (default: one of the
%%     application's pool, round robin).</li>
%% <li>`await': `true' (default) returns once the handshake succeeded or
%%     failed for good (with automatic retries this may be much later than
%%     `connect_timeout'; in manual retry mode the first failure is
%%     returned); `false' returns `{ok, Conn}' at once, and the owner gets
%%     `{ws_port_up, Conn, Info}' or `{ws_port_closed, Conn, Reason}'.</li>
%% </ul>
%% A bad option gives `{error, {bad_option, Name, Value}}' without
%% contacting the port program.
-spec connect(unicode:chardata(), connect_opts()) -> {ok, conn()} | {error, close_reason()}.
connect(Url, Opts) ->
    case ws_port_proto:normalize_url(Url) of
        {ok, UrlBin} ->
            case ws_port_proto:normalize_connect_opts(Opts) of
                {ok, Normal} -> connect_normalized(UrlBin, Normal);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

connect_normalized(Url, #{connect_timeout := Timeout} = Opts) ->
    Driver =
        case Opts of
            #{driver := D} -> D;
            _ -> pick_driver()
        end,
    CallTimeout =
        case Opts of
            #{retry := Retry} when Retry =/= false -> infinity;
            _ -> Timeout + 5000
        end,
    try
        ws_port_driver:connect(Driver, Url, Opts, CallTimeout)
    catch
        exit:{timeout, _} -> {error, timeout};
        exit:{noproc, _} -> {error, {no_driver, Driver}};
        exit:{{nodedown, _}, _} -> {error, {no_driver, Driver}};
        exit:{Reason, _} -> {error, {driver_exit, Reason}}
    end.

%% Round robin over the application's pool.
pick_driver() ->
    case persistent_term:get(?WS_PORT_POOL, undefined) of
        {Names, Counter} ->
            N = atomics:add_get(Counter, 1, 1),
            element(N rem tuple_size(Names) + 1, Names);
        undefined ->
            %% the application is not started: connect fails with no_driver
            ws_port_driver_1
    end.

%% @equiv close(Conn, 1000, <<>>)
-spec close(conn()) -> ok.
close(Conn) ->
    close(Conn, 1000, <<>>).

%% @doc Closes a connection with a close code (1000..4999, one a client may
%% send) and a reason (at most 123 bytes). The owner gets no further
%% message for `Conn' (messages already in its mailbox stay there).
%% Closing a closed connection is `ok'.
-spec close(conn(), 1000..4999, unicode:chardata()) -> ok.
close({ws_port, Driver, Id} = Conn, Code, Reason) ->
    case ws_port_proto:validate_close(Code, Reason) of
        {ok, Code, ReasonBin} ->
            try
                ws_port_driver:close(Driver, Id, Code, ReasonBin)
            catch
                exit:_ -> ok
            end;
        error ->
            error(badarg, [Conn, Code, Reason])
    end.

%%====================================================================
%% Data
%%====================================================================

%% @doc Sends one message. The caller writes it to the port itself (no
%% process hop); a busy port blocks the caller, as a busy socket does.
%%
%% Returns `{error, not_connected}' while the handshake is in progress
%% (also during a reconnection after a port restart) and `{error, closed}'
%% once the connection is closed. Text is not checked for UTF-8 here.
-spec send(conn(), message()) -> ok | {error, closed | not_connected}.
send({ws_port, Driver, Id}, {Type, Data}) when
    Type =:= text; Type =:= binary; Type =:= ping; Type =:= pong
->
    case lookup(Driver, Id) of
        {Port, open, _, _} ->
            port_send(Port, Id, Type, Data);
        {Port, connecting, _, true} ->
            %% the port keeps it until the next handshake (send_queue)
            port_send(Port, Id, Type, Data);
        {_, connecting, _, false} ->
            {error, not_connected};
        _ ->
            {error, closed}
    end;
send(Conn, Message) ->
    error(badarg, [Conn, Message]).

port_send(Port, Id, Type, Data) ->
    try erlang:port_command(Port, ws_port_proto:send_cmd(Id, Type, Data)) of
        true -> ok
    catch
        error:badarg -> command_failed(Port, Data)
    end.

%% A badarg from port_command: the port is dead (closed) or the data is not
%% iodata (the caller's fault).
command_failed(Port, Data) ->
    case erlang:port_info(Port, connected) of
        undefined ->
            {error, closed};
        _ ->
            error(badarg, [Data])
    end.

lookup(Driver, Id) ->
    try ets:lookup(?WS_PORT_TAB, {Driver, Id}) of
        [{_, Port, State, Active, Queue}] -> {Port, State, Active, Queue};
        [] -> undefined
    catch
        %% no table: the application is not running
        error:badarg -> undefined
    end.

%%====================================================================
%% Options and ownership
%%====================================================================

%% @doc In manual retry mode (`retry => #{manual => true}'), tells the port
%% program to try again after `DelayMs' milliseconds; the answer to
%% `{ws_port_down, Conn, Reason}'. Close the connection to give up.
-spec reconnect(conn(), non_neg_integer()) -> ok | {error, closed}.
reconnect({ws_port, Driver, Id}, DelayMs) when
    is_integer(DelayMs), DelayMs >= 0, DelayMs =< 4294967295
->
    case lookup(Driver, Id) of
        {Port, State, _, _} when State =:= open; State =:= connecting ->
            try erlang:port_command(Port, ws_port_proto:reconnect_cmd(Id, DelayMs)) of
                true -> ok
            catch
                error:badarg -> {error, closed}
            end;
        _ ->
            {error, closed}
    end;
reconnect(Conn, DelayMs) ->
    error(badarg, [Conn, DelayMs]).

%% @doc Sets options of a connection. Only `{active, true | false | once |
%% N}' (gen_tcp semantics: N adds N to the credit, `{ws_port_passive, Conn}'
%% comes when it reaches 0). Any process may call it.
-spec setopts(conn(), [{active, ws_port_proto:active()}]) ->
    ok | {error, closed | {bad_option, term(), term()}}.
setopts({ws_port, Driver, Id}, Opts) when is_list(Opts) ->
    case validate_setopts(Opts) of
        ok -> apply_setopts(Driver, Id, Opts);
        {error, _} = Error -> Error
    end;
setopts(Conn, Opts) ->
    error(badarg, [Conn, Opts]).

validate_setopts([]) ->
    ok;
validate_setopts([{active, Active} | Rest]) ->
    case ws_port_proto:validate_active(Active) of
        ok -> validate_setopts(Rest);
        error -> {error, {bad_option, active, Active}}
    end;
validate_setopts([{Name, Value} | _]) ->
    {error, {bad_option, Name, Value}};
validate_setopts([Other | _]) ->
    {error, {bad_option, Other, undefined}};
validate_setopts(Improper) ->
    {error, {bad_option, Improper, undefined}}.

apply_setopts(_Driver, _Id, []) ->
    ok;
apply_setopts(Driver, Id, [{active, Active} | Rest]) ->
    case set_active(Driver, Id, Active, 1) of
        ok -> apply_setopts(Driver, Id, Rest);
        {error, _} = Error -> Error
    end.

set_active(Driver, Id, Active, Tries) ->
    case lookup(Driver, Id) of
        {Port, State, _, _} when State =:= open; State =:= connecting ->
            %% remembered for a replay after a port restart
            _ = ets:update_element(?WS_PORT_TAB, {Driver, Id}, {4, Active}),
            try erlang:port_command(Port, ws_port_proto:active_cmd(Id, Active)) of
                true -> ok
            catch
                %% the port died; if it was restarted, the replay carries
                %% the mode just stored, else try the new port once
                error:badarg when Tries > 0 -> set_active(Driver, Id, Active, Tries - 1);
                error:badarg -> ok
            end;
        _ ->
            {error, closed}
    end.

%% @doc Makes `Pid' the owner of `Conn': it gets every message for `Conn'
%% from now on. Only the current owner may call it. As with gen_tcp, the
%% messages for `Conn' already in the caller's mailbox are moved to `Pid',
%% and `Pid' gets all messages in order.
-spec controlling_process(conn(), pid()) -> ok | {error, not_owner | closed}.
controlling_process({ws_port, Driver, Id} = Conn, Pid) when is_pid(Pid) ->
    try ws_port_driver:controlling_process(Driver, Id, Pid) of
        ok when Pid =:= self() ->
            ws_port_driver:release(Driver, Id);
        ok ->
            %% the driver holds Pid's messages until these are forwarded
            forward_mailbox(Conn, Pid),
            ws_port_driver:release(Driver, Id);
        {error, _} = Error ->
            Error
    catch
        exit:_ -> {error, closed}
    end;
controlling_process(Conn, Pid) ->
    error(badarg, [Conn, Pid]).

forward_mailbox(Conn, Pid) ->
    receive
        {ws_port, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_passive, Conn} = M -> forward(Conn, Pid, M);
        {ws_port_pong, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_up, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_down, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_closed, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_error, Conn, _} = M -> forward(Conn, Pid, M)
    after 0 ->
        ok
    end.

forward(Conn, Pid, Msg) ->
    Pid ! Msg,
    forward_mailbox(Conn, Pid).

%% @doc Statistics of a connection, from the port program, plus `id', `url',
%% `driver' and `owner'. Keys from the port: `state', `bytes_in',
%% `bytes_out', `msgs_in', `msgs_out', `rtt_us', `connected_us', `credit'.
-spec info(conn()) -> {ok, map()} | {error, closed}.
info({ws_port, Driver, Id}) ->
    try
        ws_port_driver:info(Driver, Id)
    catch
        exit:_ -> {error, closed}
    end;
info(Conn) ->
    error(badarg, [Conn]).
