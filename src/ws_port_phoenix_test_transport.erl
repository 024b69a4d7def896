%% @doc The transport of {@link ws_port_phoenix_test}: it stands where
%% {@link ws_port} stands under a {@link ws_port_phoenix_client}, with the
%% test process as the server. What the client sends goes to the test
%% process as messages; the test process answers with the owner messages
%% ws_port would send (`{ws_port, Conn, Frame}', `ws_port_up', ...).
%% Not for production use.
-module(ws_port_phoenix_test_transport).

-export([connect/2, send/2, setopts/2, reconnect/2, close/1]).

-export_type([conn/0]).

%% The handle: the test process and a ref naming the client's connection.
-type conn() :: {ws_port_phoenix_test, pid(), reference()}.

%% @doc Announces the connection to `test_pid' (an option) as
%% `{ws_port_phoenix_test, connect, Conn, ClientPid, Url}'.
-spec connect(binary(), map()) -> {ok, conn()} | {error, term()}.
connect(Url, #{test_pid := Test}) when is_pid(Test) ->
    Conn = {ws_port_phoenix_test, Test, make_ref()},
    Test ! {ws_port_phoenix_test, connect, Conn, self(), Url},
    {ok, Conn};
connect(_Url, _Opts) ->
    {error, {bad_option, test_pid, undefined}}.

%% @doc `{ws_port_phoenix_test, frame, Conn, Frame}' to the test process
%% (iodata made binary).
-spec send(conn(), {text | binary, iodata()}) -> ok.
send({ws_port_phoenix_test, Test, _} = Conn, {Type, Data}) ->
    Test ! {ws_port_phoenix_test, frame, Conn, {Type, iolist_to_binary(Data)}},
    ok.

%% @doc Credit is not simulated.
-spec setopts(conn(), list()) -> ok.
setopts(_Conn, _Opts) ->
    ok.

%% @doc `{ws_port_phoenix_test, reconnect, Conn, DelayMs}' to the test
%% process (a missed heartbeat); it answers with `ws_port_down' and
%% `ws_port_up' as it sees fit.
-spec reconnect(conn(), non_neg_integer()) -> ok.
reconnect({ws_port_phoenix_test, Test, _} = Conn, Delay) ->
    Test ! {ws_port_phoenix_test, reconnect, Conn, Delay},
    ok.

%% @doc `{ws_port_phoenix_test, closed, Conn}' to the test process.
-spec close(conn()) -> ok.
close({ws_port_phoenix_test, Test, _} = Conn) ->
    Test ! {ws_port_phoenix_test, closed, Conn},
    ok.
