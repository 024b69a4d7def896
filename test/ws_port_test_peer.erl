%% The python3-websockets test server (test/peers/ws_server.py) for the
%% EUnit suites: started on 127.0.0.1 port 0, stopped by closing its stdin.
-module(ws_port_test_peer).

-export([start/0, stop/1, root/0, base/1]).

-define(WAIT, 20000).

%% Starts ws_port and the server; returns {Port, TcpPort}.
start() ->
    {ok, _} = application:ensure_all_started(ws_port),
    Script = filename:join([root(), "test", "peers", "ws_server.py"]),
    Port = open_port({spawn_executable, "/usr/bin/python3"}, [
        {args, [Script, "--exit-on-eof"]}, {line, 4096}, binary, use_stdio
    ]),
    receive
        {Port, {data, {eol, <<"PORT ", N/binary>>}}} -> {Port, binary_to_integer(N)}
    after ?WAIT -> error(no_peer)
    end.

stop({Port, _}) ->
    catch port_close(Port),
    ok.

%% The repository: test/ beside src/ of the ws_port application.
root() ->
    filename:dirname(filename:dirname(code:which(ws_port))).

base({_, N}) ->
    "ws://127.0.0.1:" ++ integer_to_list(N).
