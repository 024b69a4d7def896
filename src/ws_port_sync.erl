%% @doc A synchronous interface to {@link ws_port} for scripts and tests:
%% connect, send, and wait for the next message with a timeout, without
%% writing a `receive'.
%%
%% The connection is passive (`{active, false}'); {@link receive_frame/2}
%% asks the port program for one message at a time, so nothing piles up in
%% the caller's mailbox. Only the process that connected may call
%% {@link receive_frame/2}.
%% ```
%% {ok, Conn} = ws_port_sync:connect("ws://127.0.0.1:8080/echo", #{}),
%% ok = ws_port_sync:send(Conn, {text, <<"hi">>}),
%% {ok, {text, <<"hi">>}} = ws_port_sync:receive_frame(Conn, 5000),
%% ok = ws_port_sync:close(Conn).
%% '''
-module(ws_port_sync).

-export([connect/1, connect/2, send/2, receive_frame/1, receive_frame/2, close/1]).

%% Raises badarg as ws_port does: error_info names the argument (the shell
%% prints it, Elixir raises an ArgumentError with it).
-define(BADARG(Args, Cause),
    erlang:error(badarg, Args, [{error_info, #{module => ws_port, cause => Cause}}])
).

%% @equiv connect(Url, #{})
-spec connect(ws_port:url()) -> {ok, ws_port:conn()} | {error, ws_port:close_reason()}.
connect(Url) ->
    connect(Url, #{}).

%% @doc Opens a connection and waits for the handshake. `Opts' are those of
%% {@link ws_port:connect/2} except `active' and `await', which are set
%% here (`false' and `true'; given, they are `{error, {bad_option, Name,
%% Value}}'); `retry' defaults to `false', as fits a script.
-spec connect(ws_port:url(), map() | proplists:proplist()) ->
    {ok, ws_port:conn()} | {error, ws_port:close_reason()}.
connect(Url, Opts) ->
    case ws_port_proto:options_map(Opts) of
        {ok, #{active := Active}} ->
            {error, {bad_option, active, Active}};
        {ok, #{await := Await}} ->
            {error, {bad_option, await, Await}};
        {ok, Map} ->
            Defaults = #{retry => false},
            ws_port:connect(Url, maps:merge(Defaults, Map#{active => false, await => true}));
        {error, _} = Error ->
            Error
    end.

%% @doc Sends a frame: `{text, iodata()}', `{binary, iodata()}', `{ping,
%% iodata()}' or a binary (sent as text).
-spec send(ws_port:conn(), ws_port:message() | binary()) -> ok | {error, ws_port:send_error()}.
send(Conn, Data) when is_binary(Data) ->
    ws_port:send(Conn, {text, Data});
send(Conn, Message) ->
    ws_port:send(Conn, Message).

%% @equiv receive_frame(Conn, 5000)
-spec receive_frame(ws_port:conn()) ->
    {ok, {text | binary, binary()}} | {error, timeout | {closed, term()}}.
receive_frame(Conn) ->
    receive_frame(Conn, 5000).

%% @doc Waits up to `Timeout' ms for the next message. `{error, {closed,
%% Reason}}' when the connection ended. A reconnection (with the `retry'
%% option) is waited through. A `Timeout' that is not `infinity' nor an
%% integer >= 0, or a `Conn' that is not a connection, raises `badarg'
%% naming it, as {@link ws_port} does.
-spec receive_frame(ws_port:conn(), timeout()) ->
    {ok, {text | binary, binary()}} | {error, timeout | {closed, term()}}.
receive_frame(Conn, Timeout) when
    Timeout =/= infinity, not (is_integer(Timeout) andalso Timeout >= 0)
->
    ?BADARG([Conn, Timeout], #{
        2 => io_lib:format("the timeout must be infinity or an integer >= 0 (ms), got ~0tP", [Timeout, 5])
    });
receive_frame(Conn, Timeout) ->
    case ws_port:setopts(Conn, [{active, once}]) of
        ok ->
            Deadline =
                case Timeout of
                    infinity -> infinity;
                    _ -> erlang:monotonic_time(millisecond) + Timeout
                end,
            wait(Conn, Deadline);
        {error, closed} ->
            %% what was delivered before the end is still returned
            wait(Conn, erlang:monotonic_time(millisecond))
    end.

wait(Conn, Deadline) ->
    receive
        {ws_port, Conn, Frame} -> {ok, Frame};
        {ws_port_closed, Conn, Reason} -> {error, {closed, Reason}};
        {ws_port_passive, Conn} -> wait(Conn, Deadline);
        {ws_port_up, Conn, _} -> wait(Conn, Deadline);
        {ws_port_down, Conn, _} -> wait(Conn, Deadline);
        {ws_port_down, Conn, _, _} -> wait(Conn, Deadline);
        {ws_port_pong, Conn, _} -> wait(Conn, Deadline);
        {ws_port_error, Conn, _} -> wait(Conn, Deadline)
    after left(Deadline) ->
        case Deadline of
            infinity -> {error, timeout};
            _ -> closed_or_timeout(Conn)
        end
    end.

closed_or_timeout(Conn) ->
    case ws_port:info(Conn) of
        {error, closed} -> {error, {closed, closed}};
        _ -> {error, timeout}
    end.

left(infinity) -> infinity;
left(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).

%% @doc Closes the connection (1000) and drops its messages still in the
%% caller's mailbox.
-spec close(ws_port:conn()) -> ok.
close(Conn) ->
    ok = ws_port:close(Conn),
    flush(Conn).

flush(Conn) ->
    receive
        {ws_port, Conn, _} -> flush(Conn);
        {ws_port_passive, Conn} -> flush(Conn);
        {ws_port_up, Conn, _} -> flush(Conn);
        {ws_port_down, Conn, _} -> flush(Conn);
        {ws_port_down, Conn, _, _} -> flush(Conn);
        {ws_port_pong, Conn, _} -> flush(Conn);
        {ws_port_closed, Conn, _} -> flush(Conn);
        {ws_port_error, Conn, _} -> flush(Conn)
    after 0 -> ok
    end.
