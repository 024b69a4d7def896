%% ws_port_phoenix_test from EUnit: an Erlang ws_port_phoenix_client
%% module (below, also the callback module) tested with no server.
-module(ws_port_phoenix_test_tests).

-behaviour(ws_port_phoenix_client).

-include_lib("eunit/include/eunit.hrl").

-export([init/1, handle_join/3, handle_message/4, handle_reply/3]).

%% The client: joins room:1 with its argument, says hello once joined,
%% answers every "ping" broadcast with a "pong" push.
init(Name) ->
    ok = ws_port_phoenix_client:join(<<"room:1">>, #{<<"name">> => Name}),
    {ok, #{}}.

handle_join(<<"room:1">>, {ok, _}, S) ->
    {ok, _} = ws_port_phoenix_client:push(<<"room:1">>, <<"hello">>, #{}),
    {ok, S};
handle_join(_, {error, _}, S) ->
    {ok, S}.

handle_message(<<"room:1">>, <<"ping">>, #{<<"n">> := N}, S) ->
    {ok, _} = ws_port_phoenix_client:push(<<"room:1">>, <<"pong">>, #{<<"n">> => N}),
    {ok, S}.

handle_reply(_Ref, _Reply, S) ->
    {ok, S}.

client_test() ->
    {ok, C} = ws_port_phoenix_test:start_client(?MODULE, #{init_arg => <<"erl">>}),
    ok = ws_port_phoenix_test:accept_connect(C),
    ?assertEqual(#{<<"name">> => <<"erl">>},
                 ws_port_phoenix_test:assert_join(C, <<"room:1">>, '_', {ok, #{}})),
    Ref = ws_port_phoenix_test:assert_push(C, <<"room:1">>, <<"hello">>, #{}),
    ok = ws_port_phoenix_test:reply(C, <<"room:1">>, Ref, {ok, #{}}),
    ok = ws_port_phoenix_test:broadcast(C, <<"room:1">>, <<"ping">>, #{<<"n">> => 7}),
    _ = ws_port_phoenix_test:assert_push(C, <<"room:1">>, <<"pong">>, #{<<"n">> => 7}),
    ok = ws_port_phoenix_test:refute_push(C, <<"room:1">>, <<"pong">>, 50),
    %% a crashed channel is rejoined with the same params
    ok = ws_port_phoenix_test:crash_channel(C, <<"room:1">>),
    ?assertEqual(#{<<"name">> => <<"erl">>},
                 ws_port_phoenix_test:assert_join(C, <<"room:1">>, '_', {ok, #{}}, 3000)),
    _ = ws_port_phoenix_test:assert_push(C, <<"room:1">>, <<"hello">>, #{}),
    ?assertError({ws_port_phoenix_test, <<"expected nope on room:1 within 10 ms, got nothing">>},
                 ws_port_phoenix_test:assert_push(C, <<"room:1">>, <<"nope">>, '_', 10)),
    unlink(C),
    ok = ws_port_phoenix_client:stop(C).
