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
%%     and will not be retried any more: a failure not retried (`retry_on'),
%%     retries exhausted, `retry => false', or `retry_fun' said `stop'
%%     (server close `{remote, Code, Text}', `eof', `idle_timeout',
%%     `{protocol_error, Code, Detail}', `{http_status, 401, Headers}', ...
%%     see docs/protocol.md); Reason is that of the last failure. Not sent
%%     after {@link close/1}.</li>
%% <li>`{ws_port_down, Conn, Reason, Info}' then, once it is back,
%%     `{ws_port_up, Conn, Info}' (same handle): the connection was lost (or
%%     an attempt failed) and will be tried again. `Info' is `#{attempt :=
%%     pos_integer(), delay_ms := non_neg_integer() | manual, unsent_bytes
%%     := non_neg_integer()}': the number of this failed attempt since the
%%     last `up' (1 for the loss of an open connection), the delay before
%%     the next try (the one `retry_fun' chose; `manual' with `retry =>
%%     #{manual => true}': the owner answers with {@link reconnect/2} or
%%     {@link close/1}) and the bytes of frames lost with the socket. Each
%%     failed attempt is one more `ws_port_down'. When the port program died
%%     and was restarted: `{ws_port_down, Conn, {port_exit, Status},
%%     #{attempt => 1, delay_ms => 0, unsent_bytes => 0}}' (Status: its exit
%%     status, or the atom the port closed with, e.g. `epipe', when a
%%     command reached the dead program before its status). Sends in between
%%     return `{error, not_connected}' unless `send_queue' is set.</li>
%% <li>`{ws_port_up, Conn, Info}' on every re-establishment, and also for the
%%     first handshake when `await => false' was given to {@link connect/2}
%%     (a failed first attempt is then `ws_port_down' or
%%     `ws_port_closed').</li>
%% <li>`{ws_port_error, Conn, {What, Detail}}': the port program refused a
%%     command for this connection (e.g. `not_connected').</li>
%% </ul>
-module(ws_port).

-include("ws_port_int.hrl").

%% A connection handle, as the driver makes them.
-define(IS_CONN(C),
    (tuple_size(C) =:= 3 andalso element(1, C) =:= ws_port andalso
        (is_atom(element(2, C)) orelse is_pid(element(2, C))) andalso is_integer(element(3, C)))
).
%% Raises badarg as the BIFs do, in the function called (so the stack shows
%% it with its arguments): error_info names the argument at fault.
-define(BADARG(Args, Cause),
    erlang:error(badarg, Args, [{error_info, #{module => ?MODULE, cause => Cause}}])
).
%% RFC 6455 5.5: control frames carry at most 125 bytes.
-define(MAX_CONTROL_PAYLOAD, 125).

-export([connect/1, connect/2]).
-export([send/2, close/1, close/3, setopts/2, controlling_process/2, info/1, reconnect/2]).
-export([format_error/2]).

-export_type([conn/0, connect_opts/0, message/0, close_reason/0, send_error/0, url/0]).

%% A `ws://' or `wss://' URL: a string, or an Elixir `%URI{}' (as
%% `URI.parse/1' or `URI.new!/1' make it).
-type url() :: unicode:chardata() | #{'__struct__' := 'Elixir.URI', atom() => term()}.

-opaque conn() :: {ws_port, ws_port_driver:key(), ws_port_proto:id()}.

%% Options of connect/2, as a map or a proplist.
-type connect_opts() ::
    #{
        headers => [{header_part(), header_part() | fun(() -> header_part())}],
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
        retry_on => ws_port_retry:retry_on(),
        retry_fun => ws_port_retry:retry_fun(),
        retry_state => ws_port_retry:retry_state(),
        send_queue => non_neg_integer(),
        compress => boolean() | map() | proplists:proplist(),
        proxy => proxy()
    }
    | proplists:proplist().
-type retry_opts() ::
    #{
        max_retries => non_neg_integer() | infinity,
        delay => non_neg_integer(),
        max_delay => non_neg_integer(),
        backoff_factor => number(),
        jitter => full | equal | number(),
        jitter_fraction => full | equal | number(),
        manual => boolean()
    }
    | proplists:proplist().
-type header_part() :: binary() | string() | atom().
%% A proxy URL, map, `system', `none' (or `false'), or a fun returning one.
-type proxy() ::
    ws_port_proxy:proxy()
    | none
    | false
    | system
    | unicode:chardata()
    | map()
    | fun(() -> ws_port_proxy:proxy() | none | false | system | unicode:chardata() | map()).
-type client_key() ::
    binary() | {'RSAPrivateKey' | 'ECPrivateKey' | 'PrivateKeyInfo', binary()}.
-type tls_opts() ::
    #{
        verify => verify_peer | verify_none,
        cacertfile => file:filename_all(),
        certfile => file:filename_all(),
        keyfile => file:filename_all(),
        server_name => binary() | string(),
        server_name_indication => disable,
        pins => [binary() | string()],
        %% DER binaries, or what public_key:cacerts_get/0 returns
        cacerts => [binary() | tuple()],
        versions => ['tlsv1.2' | 'tlsv1.3'],
        ciphers => binary() | string(),
        ciphersuites => binary() | string(),
        %% the client certificate: DER, [DER] (leaf first) or PEM
        cert => binary() | [binary()],
        %% the client key: PEM, DER or {KeyType, DER} as OTP's ssl takes it,
        %% or a fun returning it
        key => client_key() | fun(() -> client_key()),
        %% for an encrypted key or keyfile
        password => binary() | string() | fun(() -> binary() | string()),
        reuse_sessions => boolean()
    }
    | proplists:proplist().

%% What send/2 takes.
-type message() :: {text | binary | ping | pong, iodata()}.

%% Why send/2 did not send a (well-formed) message.
-type send_error() ::
    closed
    | not_connected
    | {invalid_utf8, ByteOffset :: non_neg_integer()}
    | {too_large, Size :: non_neg_integer(), Limit :: pos_integer()}.

%% Why a connection ended or could not be opened (docs/protocol.md), or a
%% reason found on the BEAM side.
-type close_reason() ::
    {remote | local | protocol_error, integer(), binary()}
    | {http_status, integer(), [{binary(), binary()}]}
    | {bad_handshake | tls | invalid_url | socket, binary() | atom()}
    | {dns, nxdomain | binary()}
    | {bad_option, term(), term()}
    | {port_exit, integer() | atom()}
    | {driver_exit, term()}
    | {no_driver, atom() | pid()}
    | {not_started, ws_port}
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
-spec connect(url()) -> {ok, conn()} | {error, close_reason()}.
connect(Url) ->
    connect(Url, #{}).

%% @doc Opens a WebSocket connection owned by the caller.
%%
%% `Url' is `ws://host[:port]/path' or `wss://...' (binary or string, or
%% an Elixir `%URI{}').
%% Options (a map or a proplist):
%% <ul>
%% <li>`headers': extra request headers, `[{Name, Value}]'; not the
%%     handshake's own (`Host', `Upgrade', `Connection',
%%     `Sec-WebSocket-Key', `Sec-WebSocket-Version', and
%%     `Sec-WebSocket-Protocol' and `Sec-WebSocket-Extensions', which come
%%     from `protocols' and `compress'): those are `{error, {bad_option,
%%     headers, Headers}}'. A value may be a fun
%%     returning it. The driver keeps every value as a fun, so an
%%     `Authorization' never shows in clear in its state, and nor does it in
%%     that of a `ws_port_client', a supervisor or a producer.</li>
%% <li>`protocols': the `Sec-WebSocket-Protocol' offer.</li>
%% <li>`connect_timeout': ms for DNS, TCP, TLS and the upgrade together
%%     (default 15000).</li>
%% <li>`tls': `#{verify => verify_peer | verify_none, cacertfile, certfile,
%%     keyfile, server_name, server_name_indication => disable, pins}' for
%%     wss (default: verify against the system CA store, name from the URL).
%%     `server_name_indication => disable' sends no SNI (the name is still
%%     checked); `pins': base64 SHA-256 digests of SubjectPublicKeyInfo (as
%%     HPKP and OkHttp define them, an optional "sha256/" prefix), one of
%%     which a key in the server's chain must match (else `{tls, <<"certificate
%%     pin mismatch: ...">>}'). The client certificate and key in memory:
%%     `cert' (a DER certificate, a list of them leaf first, or PEM with one
%%     or more certificates, leaf first) with `key' (PEM, DER, or
%%     `{KeyType, DER}' as OTP's ssl takes it); `password' (binary, string or
%%     a fun of arity 0 returning one, called in the caller) decrypts an
%%     encrypted `key' or `keyfile'. The key and password never appear in
%%     errors, `info/1' or `sys:get_status/1'. `reuse_sessions' (default
%%     `true'): a reconnect offers the connection's last TLS session
%%     (ticket), so the server can resume it instead of a full handshake
%%     (`false': always a full handshake).</li>
%% <li>`max_message_size': bytes (default 64 MiB): a larger message from
%%     the server closes the connection (1009); {@link send/2} refuses
%%     larger ones.</li>
%% <li>`active': `true' (default), `false', `once' or an integer N >= 0
%%     (the initial credit), as gen_tcp.</li>
%% <li>`ping_interval', `idle_timeout': ms, 0 = off (default).</li>
%% <li>`retry': the port program's reconnection policy, on by default.
%%     A map or proplist of `max_retries' (default `infinity'), `delay' (ms,
%%     1000), `max_delay' (ms, 30000), `backoff_factor' (2; 1 = constant),
%%     `jitter' (`full', the default: each wait drawn uniformly from 0 to
%%     the delay; `equal': from half the delay to the delay; a number: a
%%     fraction, 0.1 = +-10%, 0 = none; alias `jitter_fraction') and `manual' (false;
%%     true: the owner calls {@link reconnect/2} after each `ws_port_down').
%%     Keys not given keep their defaults; `true' or no `retry' option is
%%     the default policy, `false' disables reconnection. The port program
%%     reconnects by itself after failures of the classes in `retry_on'.</li>
%% <li>`retry_on': which failures are retried (see {@link ws_port_retry}):
%%     a list of the classes `network', `timeout', `http_5xx', `http_429',
%%     `http_4xx', `tls', `protocol', `http_other' and at most one of
%%     `remote_close' (every server close), `{remote_close, Codes}' (those
%%     closes) or `{remote_close, {except, Codes}}', or a named policy:
%%     `default' (the default: `[network, timeout, http_5xx, http_429,
%%     protocol, {remote_close, [1001, 1005, 1006, 1011, 1012, 1013,
%%     1014]}]'; a close with 1000 or another code ends the connection) or
%%     `stay_connected' (every server close but 1002, 1003, 1007, 1009, the
%%     answers to our own frames; the default of `ws_port_client').</li>
%% <li>`retry_fun': `fun((State) -> State | stop)', the contract of
%%     off_broadway_websocket's `ws_retry_fun' (see {@link ws_port_retry}):
%%     after each failed attempt it is called with the current retry state
%%     and returns the next one, whose `delay' (ms) is waited before the next
%%     try and which is the next call's input (extra keys are carried
%%     through), or `stop' (then `{ws_port_closed, Conn, Reason}' with the
%%     last failure's reason). A crash or a bad return value is logged and
%%     stops the retries. The state starts again from `retry_state' after a
%%     successful reconnect. It runs in the driver process: keep it quick
%%     and do not call ws_port from it. Replaces `retry' (only `retry =>
%%     true' may be given with it); `retry_on' still applies.</li>
%% <li>`retry_state': the initial state of `retry_fun', a map (default
%%     `#{max_retries => 5, retries_left => 5, delay => 10000}').</li>
%% <li>`compress': permessage-deflate (RFC 7692): `false' (default),
%%     `true', or a map or proplist of `client_max_window_bits' (`true' or
%%     9..15), `server_max_window_bits' (8..15),
%%     `client_no_context_takeover', `server_no_context_takeover'
%%     (booleans), `level' (0..9), `mem_level' (1..9) and `threshold'
%%     (bytes: shorter messages are sent uncompressed, default 64).</li>
%% <li>`send_queue': up to N text/binary messages sent while the connection
%%     is not open are kept by the port and written, in order, after the
%%     next handshake; when N are already kept, the port drops the message
%%     and the owner gets `{ws_port_error, Conn, {not_connected, Detail}}'
%%     naming it (default 0: such sends return `{error, not_connected}').</li>
%% <li>`driver': a driver's registered name or pid (default: one of the
%%     application's pool, round robin).</li>
%% <li>`await': `true' (default) returns once the first attempt succeeded
%%     or failed (within `connect_timeout'): a failure is `{error, Reason}'
%%     and the connection is not retried, whatever `retry' says; `false'
%%     returns `{ok, Conn}' at once, and the owner gets `{ws_port_up, Conn,
%%     Info}', or `{ws_port_down, Conn, Reason, Info}' (then retries) or
%%     `{ws_port_closed, Conn, Reason}'.</li>
%% </ul>
%% A bad option gives `{error, {bad_option, Name, Value}}' without
%% contacting the port program; an option given twice in a proplist
%% `{error, {bad_option, {duplicate, Name}, SecondValue}}'. Before the ws_port application is started
%% (`application:ensure_all_started(ws_port)'), `{error, {not_started,
%% ws_port}}'.
-spec connect(url(), connect_opts()) -> {ok, conn()} | {error, close_reason()}.
connect(Url, Opts) ->
    case ws_port_proto:normalize_url(Url) of
        {ok, UrlBin} ->
            case ws_port_proto:normalize_connect_opts(Opts) of
                {ok, Normal} ->
                    %% proxy => system: the environment, now, for this URL
                    case ws_port_proxy:resolve(UrlBin, Normal) of
                        {ok, Resolved} -> connect_normalized(UrlBin, Resolved);
                        {error, _} = Error -> Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

connect_normalized(Url, Opts) ->
    case ets:whereis(?WS_PORT_TAB) of
        undefined ->
            %% the table of connections belongs to the application
            {error, {not_started, ws_port}};
        _ ->
            Driver =
                case Opts of
                    #{driver := D} -> D;
                    _ -> pick_driver()
                end,
            call_connect(Driver, Url, Opts)
    end.

call_connect(Driver, Url, Opts) ->
    try
        %% no call timeout: the driver's guard always answers (after
        %% Timeout + 3000 ms without news, a probe of the port program:
        %% {error, timeout} if it is hung, 10 s later), and the call's
        %% monitor covers a driver that dies; a call
        %% timeout would leave a connection the caller never heard of
        ws_port_driver:connect(Driver, Url, Opts, infinity)
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
            %% the application is stopping: connect fails with no_driver
            ws_port_driver_1
    end.

%% @equiv close(Conn, 1000, <<>>)
-spec close(conn()) -> ok.
close(Conn) when ?IS_CONN(Conn) ->
    close(Conn, 1000, <<>>);
close(Conn) ->
    ?BADARG([Conn], #{1 => not_conn(Conn)}).

%% @doc Closes a connection with a close code and a reason. The code must
%% be one a client may send (RFC 6455 7.4): 1000-1003, 1007-1014 or
%% 3000-4999; the reason is UTF-8 of at most 123 bytes (a binary, or a
%% string of characters). The owner gets no further message for `Conn'
%% (messages already in its mailbox stay there). Closing a closed
%% connection is `ok'. Bad arguments raise `badarg' naming the argument
%% (see {@link send/2}).
-spec close(conn(), 1000..4999, unicode:chardata()) -> ok.
close({ws_port, Driver, Id} = Conn, Code, Reason) when ?IS_CONN(Conn) ->
    case ws_port_proto:validate_close(Code, Reason) of
        {ok, Code, ReasonBin} ->
            try
                ws_port_driver:close(Driver, Id, Code, ReasonBin)
            catch
                exit:_ -> ok
            end;
        {error, code} ->
            ?BADARG([Conn, Code, Reason], #{
                2 => io_lib:format(
                    "~0tP is not a close code a client may send: RFC 6455 7.4 allows "
                    "1000-1003, 1007-1014 and 3000-4999",
                    [Code, 5]
                )
            });
        {error, reason} ->
            ?BADARG([Conn, Code, Reason], #{
                3 => io_lib:format(
                    "the close reason must be UTF-8 of at most 123 bytes, got ~0tP",
                    [Reason, 10]
                )
            })
    end;
close(Conn, Code, Reason) ->
    ?BADARG([Conn, Code, Reason], #{1 => not_conn(Conn)}).

%%====================================================================
%% Data
%%====================================================================

%% @doc Sends one message. The caller writes it to the port itself (no
%% process hop). When more than 4 MiB of this connection's frames wait in
%% the port program to be written (the peer reads slowly or not at all), the
%% call waits until that is back under 1 MiB, as gen_tcp:send/2 waits on a
%% full socket; sends on other connections go on meanwhile.
%%
%% A message the connection may not send is refused here, before anything
%% reaches the port: `{error, {invalid_utf8, Offset}}' for text that is not
%% UTF-8 (`Offset': the first byte that is not part of a valid character),
%% `{error, {too_large, Size, Limit}}' for a ping or pong payload over 125
%% bytes (RFC 6455 5.5) or a text or binary message over the connection's
%% `max_message_size' (default 64 MiB). Text is checked with
%% `unicode:characters_to_binary/3' in the caller (about 1 GB/s; a text
%% given as a list is made one binary first).
%%
%% While the connection is not open (handshake in progress, waiting to
%% retry, port program restarting) it returns `{error, not_connected}' and
%% the message is not sent, unless the connection has a `send_queue': then
%% the message goes to the port, which keeps it and writes it after the
%% next handshake, or, when its queue is full, drops it and tells the owner
%% `{ws_port_error, Conn, {not_connected, Detail}}'. The same message
%% reaches the owner when the connection is lost between this check and
%% the port. `{error, closed}' once the connection is closed.
%%
%% Arguments of the wrong shape (not a connection handle, not `{text |
%% binary | ping | pong, iodata()}') raise `badarg', like the BIFs do: the
%% exception's error_info names the argument and what is wrong (the shell
%% prints it; Elixir raises an `ArgumentError' with that message). The same
%% holds for every function of this module.
-spec send(conn(), message()) -> ok | {error, send_error()}.
send({ws_port, Driver, Id} = Conn, Message) when ?IS_CONN(Conn) ->
    case check_message(Message) of
        {ok, Type, Data, Size} ->
            case lookup(Driver, Id) of
                {_, _, _, _, MaxSize} ->
                    case check_payload(Type, Data, Size, MaxSize) of
                        {ok, Payload} -> send_now(Driver, Id, Type, Payload);
                        {error, _} = Error -> Error
                    end;
                undefined ->
                    {error, closed}
            end;
        {badarg, Why} ->
            ?BADARG([Conn, Message], #{2 => Why})
    end;
send(Conn, Message) ->
    ?BADARG([Conn, Message], #{1 => not_conn(Conn)}).

%% The shape of a message: {Type, iodata()}.
check_message({Type, Data}) when
    Type =:= text; Type =:= binary; Type =:= ping; Type =:= pong
->
    if
        is_binary(Data) ->
            {ok, Type, Data, byte_size(Data)};
        is_list(Data) ->
            try iolist_size(Data) of
                Size -> {ok, Type, Data, Size}
            catch
                error:_ -> {badarg, not_iodata(Type, Data)}
            end;
        true ->
            {badarg, not_iodata(Type, Data)}
    end;
check_message(Message) ->
    {badarg,
        io_lib:format(
            "a message is {text | binary | ping | pong, iodata()}, got ~0tP", [Message, 10]
        )}.

not_iodata(Type, Data) ->
    io_lib:format(
        "the payload of a ~s message must be iodata (a binary, or a list of bytes "
        "and binaries), got ~0tP",
        [Type, Data, 10]
    ).

%% What the connection may send: control payloads of 125 bytes at most
%% (RFC 6455 5.5), messages up to max_message_size, text in UTF-8.
check_payload(Type, _Data, Size, _MaxSize) when
    (Type =:= ping orelse Type =:= pong), Size > ?MAX_CONTROL_PAYLOAD
->
    {error, {too_large, Size, ?MAX_CONTROL_PAYLOAD}};
check_payload(Type, _Data, Size, MaxSize) when
    (Type =:= text orelse Type =:= binary), Size > MaxSize
->
    {error, {too_large, Size, MaxSize}};
check_payload(text, Data, _Size, _MaxSize) when is_binary(Data) ->
    check_utf8(Data);
check_payload(text, Data, _Size, _MaxSize) ->
    %% chardata would take the list's integers for characters: as iodata
    %% they are bytes, so check (and send) one binary
    check_utf8(iolist_to_binary(Data));
check_payload(_Type, Data, _Size, _MaxSize) ->
    {ok, Data}.

%% unicode:characters_to_binary/3 returns the same binary when it is valid
%% UTF-8 (no copy) and yields on long inputs.
check_utf8(Bin) ->
    case unicode:characters_to_binary(Bin, utf8, utf8) of
        Bin -> {ok, Bin};
        {_, Valid, _} -> {error, {invalid_utf8, byte_size(Valid)}};
        _ -> {ok, Bin}
    end.

send_now(Driver, Id, Type, Data) ->
    case lookup(Driver, Id) of
        {Port, open, _, _, _} ->
            port_send(Driver, Id, Port, Type, Data);
        {_, busy, _, _, _} ->
            %% more than 4 MiB wait to be written to this peer: wait, as
            %% gen_tcp:send does on a full socket (other connections go on)
            ok = ws_port_driver:await_ready(Driver, Id),
            send_now(Driver, Id, Type, Data);
        {Port, connecting, _, true, _} ->
            %% the port keeps it until the next handshake (send_queue)
            port_send(Driver, Id, Port, Type, Data);
        {_, connecting, _, false, _} ->
            {error, not_connected};
        _ ->
            {error, closed}
    end.

port_send(Driver, Id, Port, Type, Data) ->
    try erlang:port_command(Port, ws_port_proto:send_cmd(Id, Type, Data)) of
        true -> ok
    catch
        error:badarg -> command_failed(Driver, Id, Port, Type, Data)
    end.

%% A badarg from port_command (the data was checked before): the port
%% program died. The driver restarts it and opens the connection again:
%% not_connected, or send on the new port if that is done already.
command_failed(Driver, Id, Port, Type, Data) ->
    case lookup(Driver, Id) of
        {Port, _, _, _, _} -> {error, not_connected};
        {_, _, _, _, _} -> send_now(Driver, Id, Type, Data);
        undefined -> {error, closed}
    end.

lookup(Driver, Id) ->
    try ets:lookup(?WS_PORT_TAB, {Driver, Id}) of
        [{_, Port, State, Active, Queue, MaxSize}] -> {Port, State, Active, Queue, MaxSize};
        [] -> undefined
    catch
        %% no table: the application is not running
        error:badarg -> undefined
    end.

%%====================================================================
%% Options and ownership
%%====================================================================

%% @doc Reconnects after `DelayMs' milliseconds, keeping the handle.
%%
%% On an open (or connecting) connection: drops it now (close 1000
%% `"reconnecting"' when open) and opens it again, whatever the retry
%% policy; the owner gets `{ws_port_down, Conn, reconnect, #{delay_ms :=
%% DelayMs}}' then `{ws_port_up, Conn, Info}'. Use it when the link looks
%% dead to you (missed application heartbeats).
%%
%% In manual retry mode (`retry => #{manual => true}'): the answer to
%% `{ws_port_down, Conn, Reason, #{delay_ms := manual}}'. Close the
%% connection to give up. With `retry_fun' the driver answers those.
-spec reconnect(conn(), non_neg_integer()) -> ok | {error, closed}.
reconnect({ws_port, Driver, Id} = Conn, DelayMs) when
    ?IS_CONN(Conn), is_integer(DelayMs), DelayMs >= 0, DelayMs =< 4294967295
->
    case lookup(Driver, Id) of
        {Port, State, _, _, _} when State =:= open; State =:= busy; State =:= connecting ->
            try erlang:port_command(Port, ws_port_proto:reconnect_cmd(Id, DelayMs)) of
                true -> ok
            catch
                error:badarg -> {error, closed}
            end;
        _ ->
            {error, closed}
    end;
reconnect(Conn, DelayMs) when ?IS_CONN(Conn) ->
    ?BADARG([Conn, DelayMs], #{
        2 => io_lib:format("the delay must be an integer 0..4294967295 (ms), got ~0tP", [DelayMs, 5])
    });
reconnect(Conn, DelayMs) ->
    ?BADARG([Conn, DelayMs], #{1 => not_conn(Conn)}).

%% @doc Sets options of a connection. Only `{active, true | false | once |
%% N}' (gen_tcp semantics: N adds N to the credit, `{ws_port_passive, Conn}'
%% comes when it reaches 0). Any process may call it. An option it does not
%% know, or a bad value, is `{error, {bad_option, Name, Value}}' (nothing is
%% changed); a second argument that is not a list raises `badarg'.
-spec setopts(conn(), [{active, ws_port_proto:active()}]) ->
    ok | {error, closed | {bad_option, term(), term()}}.
setopts({ws_port, Driver, Id} = Conn, Opts) when ?IS_CONN(Conn), is_list(Opts) ->
    case validate_setopts(Opts) of
        ok -> apply_setopts(Driver, Id, Opts);
        {error, _} = Error -> Error
    end;
setopts(Conn, Opts) when ?IS_CONN(Conn) ->
    ?BADARG([Conn, Opts], #{
        2 => io_lib:format("options are a list such as [{active, once}], got ~0tP", [Opts, 10])
    });
setopts(Conn, Opts) ->
    ?BADARG([Conn, Opts], #{1 => not_conn(Conn)}).

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
        {Port, State, _, _, _} when State =:= open; State =:= busy; State =:= connecting ->
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
%% and `Pid' gets all messages in order. `Pid' must be a local pid (else
%% `badarg').
-spec controlling_process(conn(), pid()) -> ok | {error, not_owner | closed}.
controlling_process({ws_port, Driver, Id} = Conn, Pid) when
    ?IS_CONN(Conn), is_pid(Pid), node(Pid) =:= node()
->
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
controlling_process(Conn, Pid) when ?IS_CONN(Conn), is_pid(Pid) ->
    ?BADARG([Conn, Pid], #{
        2 => io_lib:format("the new owner must be a local pid, got ~0p of node ~0tp", [Pid, node(Pid)])
    });
controlling_process(Conn, Pid) when ?IS_CONN(Conn) ->
    ?BADARG([Conn, Pid], #{2 => io_lib:format("the new owner must be a pid, got ~0tP", [Pid, 5])});
controlling_process(Conn, Pid) ->
    ?BADARG([Conn, Pid], #{1 => not_conn(Conn)}).

forward_mailbox(Conn, Pid) ->
    receive
        {ws_port, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_passive, Conn} = M -> forward(Conn, Pid, M);
        {ws_port_pong, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_up, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_down, Conn, _, _} = M -> forward(Conn, Pid, M);
        {ws_port_closed, Conn, _} = M -> forward(Conn, Pid, M);
        {ws_port_error, Conn, _} = M -> forward(Conn, Pid, M)
    after 0 ->
        ok
    end.

forward(Conn, Pid, Msg) ->
    Pid ! Msg,
    forward_mailbox(Conn, Pid).

%% @doc Statistics of a connection, from the port program, plus `id', `url',
%% `driver' and `owner', and the current connection's handshake: `protocol'
%% (the subprotocol the server chose, `undefined' if none) and `headers'
%% (the response headers of the upgrade, `[{Name, Value}]' binaries); both
%% are `undefined' while the connection is not open. Keys from the port:
%% `state' (`open',
%% `reconnecting' while waiting to retry, `resolving', `connecting',
%% `proxy_handshake', `tls_handshake', `upgrading', `closing'), `proxy' (the
%% proxy as a URL without credentials, or `none'), `attempt' (failed attempts
%% since the last handshake), `bytes_in', `bytes_out', `msgs_in',
%% `msgs_out', `rtt_us' (round-trip time of the last pong, `undefined'
%% before one), `connected_us' (time since the current connection's
%% handshake, `undefined' while not open), `credit', `msgs_spliced' (of
%% `msgs_in', the large binary messages whose rest went from a plain TCP
%% socket to the BEAM by splice(2), not copied by the port), `compression'
%% (`false', or the permessage-deflate parameters agreed and the current
%% connection's payload bytes `bytes_in_wire', `bytes_in_plain',
%% `bytes_out_wire', `bytes_out_plain'), `tls_resumed' (wss: `true' when the
%% open connection's TLS handshake resumed a session, `false' for a full
%% handshake; `undefined' for ws:// or while not open). `reconnects' (times
%% the connection came back after a loss, port program restarts included)
%% is counted by the driver; the port's byte and message counters start
%% again when the port program restarts.
-spec info(conn()) -> {ok, map()} | {error, closed}.
info({ws_port, Driver, Id} = Conn) when ?IS_CONN(Conn) ->
    try
        ws_port_driver:info(Driver, Id)
    catch
        exit:_ -> {error, closed}
    end;
info(Conn) ->
    ?BADARG([Conn], #{1 => not_conn(Conn)}).

%%====================================================================
%% Errors
%%====================================================================

not_conn(Term) ->
    io_lib:format("not a ws_port connection (from ws_port:connect/2), got ~0tP", [Term, 10]).

%% @doc Formats the `badarg' exceptions of this module (the error_info
%% protocol of `erl_error', used by the shell and by Elixir): a map from
%% the position of each argument at fault to what is wrong with it.
-spec format_error(term(), erlang:stacktrace()) -> #{pos_integer() | general => unicode:chardata()}.
format_error(_Reason, [{_M, _F, _As, Info} | _]) ->
    ErrorInfo = proplists:get_value(error_info, Info, #{}),
    case ErrorInfo of
        #{cause := Cause} when is_map(Cause) -> Cause;
        _ -> #{}
    end;
format_error(_Reason, _Stacktrace) ->
    #{}.
