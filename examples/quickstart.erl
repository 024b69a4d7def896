%% Quick start in Erlang: connect, send, receive, close.
%%
%% From the repository's root, against a WebSocket echo server at URL (a
%% local one: `/usr/bin/python3 test/peers/ws_server.py &` prints `PORT <n>`,
%% the URL is then ws://127.0.0.1:<n>/echo):
%%
%%   rebar3 compile      # builds priv/ws_port and _build/default/lib/ws_port/ebin
%%   erlc -o /tmp examples/quickstart.erl
%%   erl -pa _build/default/lib/ws_port/ebin -pa /tmp -noshell \
%%       -eval 'quickstart:main("ws://127.0.0.1:PORT/echo"), halt().'
%%
%% (`make demo` builds with mix into _build/dev, whose ws_port.app also needs
%% Elixir's own applications on the code path: use rebar3's build here.)
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
