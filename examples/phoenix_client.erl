%% A Phoenix Channels client module in Erlang (the ws_port_phoenix_client
%% behaviour): it joins a topic from init/1, pushes once joined, prints
%% what the channel sends; reconnection and rejoins need no code here.
%%
%%   erlc -pa _build/default/lib/ws_port/ebin -o /tmp examples/phoenix_client.erl
%%   erl -pa _build/default/lib/ws_port/ebin -pa /tmp -noshell \
%%       -eval 'phoenix_client:main("ws://127.0.0.1:PORT/socket/websocket"), halt().'
%%
%% against the Phoenix-protocol test server test/peers/phoenix_server.py
%% (prints PORT <n>), or your Phoenix app with its own topic and events.
-module(phoenix_client).

-behaviour(ws_port_phoenix_client).

-export([main/1]).
-export([init/1, handle_connect/1, handle_join/3, handle_reply/3, handle_message/4]).

main(Url) ->
    {ok, _} = application:ensure_all_started(ws_port),
    {ok, Client} = ws_port_phoenix_client:start_link(?MODULE, Url, #{
        params => #{token => <<"good">>},
        init_arg => self()
    }),
    receive
        done -> ok
    after 10000 -> io:format("no answer within 10 s~n")
    end,
    ws_port_phoenix_client:stop(Client).

init(Parent) ->
    ok = ws_port_phoenix_client:join(<<"room:lobby">>, #{<<"user">> => <<"erlang">>}),
    {ok, #{parent => Parent}}.

handle_connect(State) ->
    io:format("connected~n"),
    {ok, State}.

handle_join(Topic, {ok, Reply}, State) ->
    io:format("joined ~ts: ~p~n", [Topic, Reply]),
    {ok, Ref} = ws_port_phoenix_client:push(Topic, <<"push_me">>, #{<<"hello">> => <<"world">>}),
    {ok, State#{ref => Ref}};
handle_join(Topic, {error, Reply}, State) ->
    io:format("join of ~ts refused: ~p~n", [Topic, Reply]),
    {stop, normal, State}.

handle_reply(Ref, Reply, #{ref := Ref} = State) ->
    io:format("reply: ~p~n", [Reply]),
    {ok, State}.

handle_message(Topic, Event, Payload, #{parent := Parent} = State) ->
    io:format("~ts on ~ts: ~p~n", [Event, Topic, Payload]),
    Parent ! done,
    {ok, State}.
