%% Quick start in Erlang: connect, send, receive, close.
%%
%%   erlc -o /tmp examples/quickstart.erl
%%   erl -pa _build/default/lib/ws_port/ebin -pa /tmp -noshell \
%%       -eval 'quickstart:main("ws://127.0.0.1:PORT/echo"), halt().'
-module(quickstart).
-export([main/1]).

main(Url) ->
    {ok, _} = application:ensure_all_started(ws_port),
    {ok, Conn} = ws_port:connect(Url, #{connect_timeout => 5000}),
    ok = ws_port:send(Conn, {text, <<"hello from Erlang">>}),
    receive
        {ws_port, Conn, {text, Echo}} -> io:format("received: ~s~n", [Echo])
    after 5000 -> error(no_echo)
    end,
    ok = ws_port:close(Conn).
