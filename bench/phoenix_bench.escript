#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noinput
%%
%% phoenix_bench: Phoenix broadcasts of small JSON payloads received by
%% one process, three ways in the same run, against test/peers/phoenix_server.py
%% (its "flood" event writes N pre-built broadcast frames straight to the
%% socket, so the server is not what is measured):
%%
%%   raw      ws_port alone: the frames counted, not decoded
%%   client   a ws_port_phoenix_client module: every frame decoded (V2 JSON)
%%            and given to handle_message/4, credit managed (window 100)
%%   sync     ws_port_phoenix: await_message/4 for each
%%
%% and the JSON codec (ws_port_json) against python3's json (C accelerated)
%% on the same documents.
%%
%%   escript bench/phoenix_bench.escript [N] [SIZE] [RUNS]
%%
%% N broadcasts (default 200000) of {"s": SIZE x's} (default 20; the frame
%% is ~60 bytes), RUNS runs (default 3), medians printed as a markdown
%% table. The ws_port code is found as recv_bench.escript finds it.

-module(phoenix_bench).
-behaviour(ws_port_phoenix_client).  % (escript warns it cannot see it at compile time; harmless)
-mode(compile).

-export([main/1, init/1, handle_join/3, handle_message/4]).

main(Args) ->
    [N, Size, Runs] =
        [list_to_integer(A) || A <- Args] ++ lists:nthtail(length(Args), [200000, 20, 3]),
    add_code_path(),
    {ok, _} = application:ensure_all_started(ws_port),
    {Server, Port} = start_server(),
    Url = "ws://127.0.0.1:" ++ integer_to_list(Port) ++ "/socket/websocket",
    Results = [
        {raw, [raw(Url, N, Size) || _ <- lists:seq(1, Runs)]},
        {client, [client(Url, N, Size) || _ <- lists:seq(1, Runs)]},
        {sync, [sync(Url, N, Size) || _ <- lists:seq(1, Runs)]}
    ],
    port_close(Server),
    Raw = median(proplists:get_value(raw, Results)),
    io:format("~n### Phoenix broadcasts into one process (N=~b, payload {\"s\": ~b x's}, median of ~b)~n~n",
              [N, Size, Runs]),
    io:format("| client | msgs/s | of raw ws_port |~n|---|---|---|~n"),
    [io:format("| ~s | ~s | ~.2f |~n", [Name, fmt(median(Rs)), median(Rs) / Raw])
     || {Name, Rs} <- Results],
    json_bench(Size).

%%--------------------------------------------------------------------
%% raw ws_port

raw(Url, N, Size) ->
    {ok, C} = ws_port:connect(Url ++ "?vsn=2.0.0", #{active => true, retry => false}),
    ok = ws_port:send(C, {text, <<"[\"1\",\"1\",\"room:bench\",\"phx_join\",{}]">>}),
    receive {ws_port, C, {text, _JoinReply}} -> ok after 10000 -> error(no_join_reply) end,
    Flood = io_lib:format("[\"1\",\"2\",\"room:bench\",\"flood\",{\"n\":~b,\"size\":~b}]", [N, Size]),
    T0 = erlang:monotonic_time(),
    ok = ws_port:send(C, {text, iolist_to_binary(Flood)}),
    count(C, N),
    Rate = rate(N, T0),
    ok = ws_port:close(C),
    Rate.

count(_C, 0) -> ok;
count(C, K) -> receive {ws_port, C, {text, _}} -> count(C, K - 1) after 30000 -> error({stalled, K}) end.

%%--------------------------------------------------------------------
%% ws_port_phoenix_client

client(Url, N, Size) ->
    {ok, Pid} = ws_port_phoenix_client:start(?MODULE, Url, #{init_arg => {self(), N, Size}}),
    Rate = receive {bench_done, R} -> R after 60000 -> error(client_stalled) end,
    ws_port_phoenix_client:stop(Pid),
    Rate.

init({Parent, N, Size}) ->
    ok = ws_port_phoenix_client:join(<<"room:bench">>),
    {ok, #{parent => Parent, n => N, size => Size, left => N, t0 => undefined}}.

handle_join(Topic, {ok, _}, #{n := N, size := Size} = S) ->
    {ok, _Ref} = ws_port_phoenix_client:push(Topic, <<"flood">>, #{n => N, size => Size}),
    {ok, S#{t0 := erlang:monotonic_time()}}.

handle_message(_Topic, <<"tick">>, #{<<"s">> := _}, #{left := 1, parent := P, n := N, t0 := T0} = S) ->
    P ! {bench_done, rate(N, T0)},
    {ok, S#{left := 0}};
handle_message(_Topic, <<"tick">>, #{<<"s">> := _}, #{left := L} = S) ->
    {ok, S#{left := L - 1}}.

%%--------------------------------------------------------------------
%% ws_port_phoenix (sync)

sync(Url, N, Size) ->
    {ok, S} = ws_port_phoenix:connect(Url, #{}),
    {ok, _} = ws_port_phoenix:join(S, <<"room:bench">>, #{}),
    T0 = erlang:monotonic_time(),
    spawn_link(fun() -> {ok, _} = ws_port_phoenix:push(S, <<"room:bench">>, <<"flood">>,
                                                       #{n => N, size => Size}, infinity) end),
    [{ok, _} = ws_port_phoenix:await_message(S, <<"room:bench">>, <<"tick">>, 30000)
     || _ <- lists:seq(1, N)],
    Rate = rate(N, T0),
    ok = ws_port_phoenix:disconnect(S),
    Rate.

%%--------------------------------------------------------------------
%% JSON: ws_port_json against python3's json

json_bench(Size) ->
    Docs = [
        {"broadcast", iolist_to_binary(["[null,null,\"room:bench\",\"tick\",{\"s\":\"",
                                        lists:duplicate(Size, $x), "\"}]"])},
        {"reply", <<"[\"7\",\"42\",\"room:lobby\",\"phx_reply\",{\"status\":\"ok\",\"response\":",
                    "{\"id\":123456,\"user\":{\"name\":\"Zo\\u00eb\",\"tags\":[\"a\",\"b\",\"c\"],",
                    "\"score\":12.75,\"active\":true,\"team\":null},\"at\":\"2026-12-02T08:00:00Z\"}}]">>}
    ],
    Iters = 200000,
    io:format("~n### JSON codec, documents per second (~b iterations, one process / one python thread)~n~n", [Iters]),
    io:format("| document | bytes | ws_port_json decode | python json.loads | ws_port_json encode | python json.dumps |~n"),
    io:format("|---|---|---|---|---|---|~n"),
    [begin
         {ok, Term} = ws_port_json:decode(Doc),
         Dec = per_sec(Iters, fun() -> {ok, _} = ws_port_json:decode(Doc) end),
         Enc = per_sec(Iters, fun() -> {ok, _} = ws_port_json:encode_to_binary(Term) end),
         {PyDec, PyEnc} = python_json(Doc, Iters),
         io:format("| ~s | ~b | ~s | ~s | ~s | ~s |~n",
                   [Name, byte_size(Doc), fmt(Dec), fmt(PyDec), fmt(Enc), fmt(PyEnc)])
     end || {Name, Doc} <- Docs],
    ok.

per_sec(Iters, Fun) ->
    T0 = erlang:monotonic_time(),
    loop(Iters, Fun),
    rate(Iters, T0).

loop(0, _) -> ok;
loop(K, F) -> F(), loop(K - 1, F).

python_json(Doc, Iters) ->
    Script = "import json,sys,timeit,base64\n"
             "d=base64.b64decode(sys.argv[1]).decode(); n=int(sys.argv[2]); v=json.loads(d)\n"
             "a=timeit.timeit(lambda: json.loads(d), number=n)\n"
             "b=timeit.timeit(lambda: json.dumps(v, separators=(',',':')), number=n)\n"
             "print(n/a, n/b)\n",
    Out = os:cmd("/usr/bin/python3 -c \"" ++ Script ++ "\" " ++ binary_to_list(base64:encode(Doc))
                 ++ " " ++ integer_to_list(Iters)),
    [A, B] = string:lexemes(string:trim(Out), " "),
    {list_to_float(A), list_to_float(B)}.

%%--------------------------------------------------------------------

start_server() ->
    Root = root(),
    Script = filename:join([Root, "test", "peers", "phoenix_server.py"]),
    %% its stderr (a broken pipe at exit) is not ours to show
    Cmd = "exec /usr/bin/python3 " ++ Script ++ " --exit-on-eof 2>/dev/null",
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", Cmd]}, {line, 4096}, binary, use_stdio]),
    receive
        {Port, {data, {eol, <<"PORT ", P/binary>>}}} -> {Port, binary_to_integer(P)}
    after 20000 -> error(no_server)
    end.

rate(N, T0) ->
    N / (erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond) / 1.0e6).

median(L) -> lists:nth((length(L) + 1) div 2, lists:sort(L)).

fmt(R) when R >= 1.0e6 -> io_lib:format("~.2f M", [R / 1.0e6]);
fmt(R) -> io_lib:format("~.1f k", [R / 1.0e3]).

root() ->
    filename:dirname(filename:dirname(filename:absname(escript:script_name()))).

add_code_path() ->
    Root = root(),
    Cands = case os:getenv("WS_PORT_EBIN") of
                false -> [];
                E -> [E]
            end ++ filelib:wildcard(filename:join([Root, "_build", "*", "lib", "ws_port", "ebin"])),
    case [D || D <- Cands, filelib:is_file(filename:join(D, "ws_port_phoenix.beam"))] of
        [Ebin | _] ->
            code:add_patha(Ebin),
            ok;
        [] ->
            io:format(standard_error, "no ws_port_phoenix.beam found (set WS_PORT_EBIN or rebar3 compile)~n", []),
            halt(1)
    end.
