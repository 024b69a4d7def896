%% A ws_port_client callback module in Erlang, run under ws_port_client_sup.
%%
%%   erlc -o /tmp examples/client_example.erl
%%   erl -pa _build/default/lib/ws_port/ebin -pa /tmp -noshell \
%%       -eval 'client_example:main("ws://127.0.0.1:PORT/rpc"), halt().'
%%
%% against the Deribit-like test server test/peers/jsonrpc_server.py
%% (examples/client_demo.sh starts one and runs this).
-module(client_example).

-behaviour(ws_port_client).

-export([main/1]).
-export([init/1, handle_connect/2, handle_frame/2, handle_disconnect/2]).

main(Url) ->
    {ok, _} = application:ensure_all_started(ws_port),
    {ok, Sup} = ws_port_client_sup:start_link(),
    unlink(Sup),
    {ok, Client} = ws_port_client_sup:start_client(Url, #{
        module => ?MODULE,
        init_arg => #{channels => [<<"trades.BTC-PERPETUAL.raw">>]},
        heartbeat => #{type => deribit, interval => 1000},
        retry => #{delay => 500, max_delay => 5000}
    }),
    timer:sleep(3500),
    #{connected := Connected, last_rtt_us := Rtt, reconnects := Reconnects} =
        ws_port_client:health(Client),
    io:format("health: connected=~p rtt=~p us reconnects=~p~n", [Connected, Rtt, Reconnects]),
    ok = ws_port_client_sup:stop_client(Client).

%% Callbacks

init(Config) ->
    {ok, Config}.

%% Every (re)connect: subscribe again.
handle_connect(#{reconnects := N}, #{channels := Channels} = State) ->
    io:format("connected (reconnects so far: ~b), subscribing~n", [N]),
    Quoted = lists:join(<<",">>, [[$", C, $"] || C <- Channels]),
    Subscribe = [
        <<"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"public/subscribe\",\"params\":{\"channels\":[">>,
        Quoted,
        <<"]}}">>
    ],
    {reply, [{text, Subscribe}], State}.

handle_frame({text, Json}, State) ->
    io:format("server says: ~ts~n", [Json]),
    {ok, State};
handle_frame({binary, _}, State) ->
    {ok, State}.

handle_disconnect(#{reason := Reason, attempt := Attempt}, State) ->
    io:format("connection lost (~p), attempt ~b; reconnecting~n", [Reason, Attempt]),
    {ok, State}.
