%% Tests of ws_port_json: exact cases, then python3's json as the oracle
%% (test/peers/json_oracle.py) for a corpus of hand-written valid and
%% invalid documents, random documents written with random whitespace and
%% escapes, random mutations of those (a fuzzer's moves: flip, insert,
%% delete, truncate, splice) and random bytes. Every decode must answer
%% {ok, _} or {error, _}; python and ws_port_json must agree on every
%% document, and on the value when both accept it.
-module(ws_port_json_tests).

-include_lib("eunit/include/eunit.hrl").

dec(B) -> ws_port_json:decode(B).
enc(T) -> element(2, {ok, _} = ws_port_json:encode_to_binary(T)).

%%====================================================================
%% Exact cases
%%====================================================================

values_test() ->
    ?assertEqual({ok, #{<<"a">> => [1, 2.5, null, true, false]}},
                 dec(<<" {\"a\" : [1, 2.5, null, true, false]}\n">>)),
    ?assertEqual({ok, []}, dec(<<"[]">>)),
    ?assertEqual({ok, #{}}, dec(<<"{ }">>)),
    ?assertEqual({ok, 0}, dec(<<"-0">>)),
    ?assertEqual({ok, 1.0e5}, dec(<<"1e5">>)),
    ?assertEqual({ok, 0.01}, dec(<<"1E-2">>)),
    ?assertEqual({ok, -12500.0}, dec(<<"-12.5e+3">>)),
    ?assertEqual({ok, 0.0}, dec(<<"1e-400">>)),
    ?assertEqual({ok, 123456789012345678901234567890123}, dec(<<"123456789012345678901234567890123">>)),
    ?assertEqual({ok, <<"a\"\\/\b\f\n\r\t", 0>>}, dec(<<"\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\"">>)),
    ?assertEqual({ok, <<"é😀"/utf8>>}, dec(<<"\"\\u00e9\\ud83d\\ude00\"">>)),
    ?assertEqual({ok, <<"é😀"/utf8>>}, dec(<<"\"é😀\""/utf8>>)),
    ?assertEqual({ok, #{<<"k">> => 2}}, dec(<<"{\"k\":1,\"k\":2}">>)),
    ?assertEqual({ok, nil}, ws_port_json:decode(<<"null">>, #{null => nil})).

errors_test() ->
    ?assertEqual({error, {unexpected_byte, $], 3}}, dec(<<"[1,]">>)),
    ?assertEqual({error, {trailing_data, 1}}, dec(<<"01">>)),
    ?assertEqual({error, {unexpected_end, 0}}, dec(<<>>)),
    ?assertEqual({error, {unexpected_end, 4}}, dec(<<"\"abc">>)),
    ?assertEqual({error, {control_character, 1, 2}}, dec(<<"\"a", 1, "\"">>)),
    ?assertEqual({error, {invalid_utf8, 1}}, dec(<<"\"", 255, "\"">>)),
    %% overlong "/" and an encoded surrogate are not UTF-8
    ?assertEqual({error, {invalid_utf8, 1}}, dec(<<"\"", 16#C0, 16#AF, "\"">>)),
    ?assertEqual({error, {invalid_utf8, 1}}, dec(<<"\"", 16#ED, 16#A0, 16#80, "\"">>)),
    ?assertEqual({error, {lone_surrogate, 1}}, dec(<<"\"\\ud800\"">>)),
    ?assertEqual({error, {lone_surrogate, 1}}, dec(<<"\"\\udc00\\ud800\"">>)),
    ?assertEqual({error, {lone_surrogate, 1}}, dec(<<"\"\\ud800\\u0041\"">>)),
    ?assertEqual({error, {invalid_escape, 1}}, dec(<<"\"\\x\"">>)),
    ?assertEqual({error, {invalid_escape, 1}}, dec(<<"\"\\u12G4\"">>)),
    ?assertEqual({error, {number_out_of_range, 1}}, dec(<<"[1e400]">>)),
    ?assertEqual({error, {unexpected_byte, $N, 0}}, dec(<<"NaN">>)),
    ?assertEqual({error, {unexpected_byte, $', 1}}, dec(<<"{'a':1}">>)),
    ?assertEqual({error, not_binary}, dec("[]")),
    %% bad options are named (they were not_binary, or a max_depth that is
    %% not a number bounded nothing)
    ?assertEqual({error, {bad_option, opts, [x]}}, ws_port_json:decode(<<"[]">>, [x])),
    ?assertEqual({error, {bad_option, max_depth, infinity}}, ws_port_json:decode(<<"[]">>, #{max_depth => infinity})),
    ?assertEqual({error, {bad_option, max_depth, 0}}, ws_port_json:decode(<<"[]">>, #{max_depth => 0})).

depth_test() ->
    Deep = fun(N) -> iolist_to_binary([lists:duplicate(N, $[), lists:duplicate(N, $])]) end,
    {ok, _} = dec(Deep(512)),
    ?assertEqual({error, {too_deep, 512, 512}}, dec(Deep(513))),
    ?assertEqual({error, {too_deep, 3, 3}}, ws_port_json:decode(Deep(4), #{max_depth => 3})),
    %% a hostile document is refused without exhausting anything
    ?assertMatch({error, {too_deep, 512, _}}, dec(binary:copy(<<"{\"a\":[">>, 1000000))).

encode_test() ->
    ?assertEqual(<<"{\"a\":[1,2.5,null,null,true,false]}">>, enc(#{a => [1, 2.5, null, nil, true, false]})),
    ?assertEqual(<<"\"q\\\"\\\\\\n\\u0001\\u001f/é\""/utf8>>, enc(<<"q\"\\\n", 1, 31, "/é"/utf8>>)),
    ?assertEqual(<<"{\"7\":[]}">>, enc(#{7 => []})),
    ?assertEqual(<<"\"atom\"">>, enc(atom)),
    ?assertEqual(<<"1.0e300">>, enc(1.0e300)),
    ?assertEqual(<<"0.1">>, enc(0.1)),
    ?assertEqual({error, {unsupported, {a}}}, ws_port_json:encode({a})),
    ?assertEqual({error, {invalid_utf8, <<255>>}}, ws_port_json:encode([<<255>>])),
    ?assertEqual({error, {invalid_key, {k}}}, ws_port_json:encode(#{{k} => 1})),
    ?assertMatch({error, {unsupported, #{'__struct__' := 'Elixir.Date'}}},
                 ws_port_json:encode(#{'__struct__' => 'Elixir.Date', year => 1})).

%%====================================================================
%% python3's json as the oracle
%%====================================================================

oracle_test_() ->
    {timeout, 300, fun oracle/0}.

oracle() ->
    _ = rand:seed(exsss),
    Seed = rand:export_seed(),
    Docs = handwritten() ++ generated(5000) ++ mutated(20000) ++ random_bytes(5000),
    Lines = [line(Doc) || Doc <- Docs],
    File = filename:join(tmp_dir(), "json_oracle_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = file:write_file(File, Lines),
    Script = filename:join([ws_port_test_peer:root(), "test", "peers", "json_oracle.py"]),
    Out = os:cmd("/usr/bin/python3 " ++ Script ++ " " ++ File ++ " 2>&1"),
    ok = file:delete(File),
    N = length(Docs),
    Expected = "AGREE " ++ integer_to_list(N) ++ "\nDISAGREE 0\n",
    ?assertEqual({Expected, seed, Seed}, {Out, seed, Seed}).

tmp_dir() ->
    Dir = filename:join([ws_port_test_peer:root(), "test", "tmp"]),
    ok = filelib:ensure_path(Dir),
    Dir.

line(Doc) ->
    Ours =
        case dec(Doc) of
            {ok, Value} -> base64:encode(enc(Value));
            {error, _} -> <<"!ERR">>
        end,
    ["d:", base64:encode(Doc), $\s, Ours, $\n].

%% Valid and invalid documents of every kind RFC 8259 speaks of.
handwritten() ->
    [
        %% valid
        <<"0">>, <<"-0">>, <<"1">>, <<"-1">>, <<"1.5">>, <<"-1.5e-3">>, <<"1E+2">>, <<"1e-0">>,
        <<"0.000001">>, <<"123456789012345678901234567890">>, <<"-9223372036854775809">>,
        <<"1.7976931348623157e308">>, <<"5e-324">>, <<"2.2250738585072014e-308">>,
        <<"0.1e1">>, <<"1e-400">>, <<"100000000000000000000000000000e-10">>,
        <<"\"\"">>, <<"\"\\u0000\"">>, <<"\"\\uFFFF\"">>, <<"\"\\uDBFF\\uDFFF\"">>, <<"\"\\/\"">>,
        <<"\"\\u00e9\\u00E9\"">>, <<"\"", 16#7F, "\"">>, <<"\"", 16#2028/utf8, 16#2029/utf8, "\"">>,
        <<"\"", 16#10FFFF/utf8, "\"">>, <<"\"", 16#FFFF/utf8, "\"">>, <<"\"", 16#D7FF/utf8, 16#E000/utf8, "\"">>,
        <<"true">>, <<"false">>, <<"null">>, <<" \t\r\n[ \t\r\n] \t\r\n">>,
        <<"[1,[2,[3,[4]]],{\"a\":{\"b\":{}}}]">>, <<"{\"\":0}">>, <<"{\"a\":1,\"a\":null}">>,
        <<"{\"\\u0000\":1}">>, <<"[\"a\",\"b\"]">>, <<"[[],[[]],{}]">>, <<"[-0.0]">>,
        %% invalid
        <<>>, <<" ">>, <<"[">>, <<"]">>, <<"{">>, <<"}">>, <<"[1,]">>, <<"[,1]">>, <<"[1 2]">>,
        <<"{\"a\"}">>, <<"{\"a\":}">>, <<"{\"a\":1,}">>, <<"{a:1}">>, <<"{1:1}">>, <<"{'a':1}">>,
        <<"'a'">>, <<"\"a">>, <<"a\"">>, <<"01">>, <<"-01">>, <<"+1">>, <<".1">>, <<"1.">>,
        <<"1.e5">>, <<"1e">>, <<"1e+">>, <<"-">>, <<"--1">>, <<"0x10">>, <<"1_000">>,
        <<"NaN">>, <<"Infinity">>, <<"-Infinity">>, <<"nul">>, <<"True">>, <<"tru">>,
        <<"1e400">>, <<"-1e400">>, <<"[1e309]">>, <<"\"\\x41\"">>, <<"\"\\u41\"">>,
        <<"\"\\uD800\"">>, <<"\"\\uDC00\"">>, <<"\"\\uD800\\uD800\"">>, <<"\"\\uD800x\"">>,
        <<"\"\\'\"">>, <<"\"\\\"">>, <<"\"\t\"">>, <<"\"\n\"">>, <<"\"", 0, "\"">>,
        <<"\"", 16#80, "\"">>, <<"\"", 16#C3, "\"">>, <<"\"", 16#C0, 16#80, "\"">>,
        <<"\"", 16#E0, 16#80, 16#80, "\"">>, <<"\"", 16#ED, 16#BF, 16#BF, "\"">>,
        <<"\"", 16#F4, 16#90, 16#80, 16#80, "\"">>, <<"\"", 16#F8, 16#88, 16#80, 16#80, 16#80, "\"">>,
        <<239, 187, 191, "[]">>, <<"[]", 0>>, <<"[] x">>, <<"[]]">>, <<"{}}">>, <<"/* c */ 1">>,
        <<"[\f]">>, <<"[", 16#A0, "]">>, <<"\"a\"\"b\"">>, <<"nulll">>, <<"[true false]">>
    ].

%% Random values written with random whitespace and random escapes.
generated(N) ->
    [iolist_to_binary(write(gen(rand:uniform(5)))) || _ <- lists:seq(1, N)].

gen(0) ->
    case rand:uniform(9) of
        1 -> rand:uniform(1000) - 500;
        2 -> (rand:uniform(1 bsl 200)) * (rand:uniform(3) - 2);
        3 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(600) - 300);
        4 -> rand:uniform(100) / 8;
        5 -> true;
        6 -> false;
        7 -> null;
        _ -> gen_string()
    end;
gen(D) ->
    case rand:uniform(4) of
        1 -> [gen(rand:uniform(D) - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        2 -> maps:from_list([{gen_string(), gen(rand:uniform(D) - 1)} || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        _ -> gen(0)
    end.

-define(CHARS, {$a, $z, $0, $\s, $", $\\, $/, 0, 1, 8, 9, 10, 12, 13, 31, 16#7F, 16#80, 16#E9,
                16#7FF, 16#800, 16#2028, 16#D7FF, 16#E000, 16#FFFD, 16#FFFF, 16#10000, 16#1F600, 16#10FFFF}).

gen_string() ->
    Chars = [element(rand:uniform(tuple_size(?CHARS)), ?CHARS) || _ <- lists:seq(1, rand:uniform(12) - 1)],
    unicode:characters_to_binary(Chars).

write(V) when is_map(V) ->
    Members = [[sp(), write_string(K), sp(), $:, sp(), write(X), sp()] || {K, X} <- maps:to_list(V)],
    [${, sp(), lists:join($,, Members), $}];
write(V) when is_list(V) ->
    [$[, sp(), lists:join($,, [[sp(), write(X), sp()] || X <- V]), $]];
write(V) when is_binary(V) ->
    write_string(V);
write(V) when is_float(V) ->
    case rand:uniform(2) of
        1 -> float_to_binary(V, [short]);
        2 -> io_lib:format("~.17e", [V])
    end;
write(V) ->
    enc(V).

sp() ->
    [element(rand:uniform(4), {$\s, $\t, $\n, $\r}) || _ <- lists:seq(1, max(0, rand:uniform(6) - 4))].

%% Each character escaped or not, at random (all control characters are).
write_string(Bin) ->
    [$", [write_char(C) || C <- unicode:characters_to_list(Bin)], $"].

write_char(C) when C < 16#20; C =:= $"; C =:= $\\ ->
    case {C, rand:uniform(2)} of
        {$", 1} -> "\\\"";
        {$\\, 1} -> "\\\\";
        {$\n, 1} -> "\\n";
        _ -> u_escape(C)
    end;
write_char($/) ->
    element(rand:uniform(2), {"/", "\\/"});
write_char(C) when C >= 16#10000 ->
    case rand:uniform(2) of
        1 ->
            V = C - 16#10000,
            [u_escape(16#D800 + (V bsr 10)), u_escape(16#DC00 + (V band 16#3FF))];
        2 ->
            <<C/utf8>>
    end;
write_char(C) ->
    case rand:uniform(4) of
        1 -> u_escape(C);
        _ -> <<C/utf8>>
    end.

u_escape(C) ->
    Hex = io_lib:format("~4.16.0b", [C]),
    case rand:uniform(2) of
        1 -> ["\\u", Hex];
        2 -> ["\\u", string:uppercase(Hex)]
    end.

%% A fuzzer's moves on valid documents.
mutated(N) ->
    Base = list_to_tuple(generated(200) ++ handwritten()),
    [mutate(element(rand:uniform(tuple_size(Base)), Base), rand:uniform(3)) || _ <- lists:seq(1, N)].

mutate(Doc, 0) ->
    Doc;
mutate(<<>>, K) ->
    mutate(<<(interesting())>>, K - 1);
mutate(Doc, K) ->
    P = rand:uniform(byte_size(Doc)) - 1,
    <<Pre:P/binary, B, Post/binary>> = Doc,
    Next =
        case rand:uniform(6) of
            1 -> <<Pre/binary, (B bxor (1 bsl (rand:uniform(8) - 1))), Post/binary>>;
            2 -> <<Pre/binary, (interesting()), B, Post/binary>>;
            3 -> <<Pre/binary, Post/binary>>;
            4 -> Pre;
            5 -> <<Pre/binary, (interesting()), Post/binary>>;
            6 -> <<Pre/binary, B, Pre/binary, Post/binary>>
        end,
    mutate(Next, K - 1).

interesting() ->
    Bytes = <<"{}[],:\"\\u0123456789eE.+- \t\nntfalsr/bx", 0, 1, 31, 16#7F, 16#80, 16#BF, 16#C0, 16#C3,
              16#E0, 16#ED, 16#EF, 16#F0, 16#F4, 16#F8, 16#FF>>,
    binary:at(Bytes, rand:uniform(byte_size(Bytes)) - 1).

random_bytes(N) ->
    [crypto:strong_rand_bytes(rand:uniform(12) - 1) || _ <- lists:seq(1, N)].
