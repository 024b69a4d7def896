%% @doc A JSON codec (RFC 8259) in plain Erlang, for OTP 25, which has no
%% `json' module, and for users who have no Hex package.
%%
%% Decoding gives the terms of OTP 27's `json': objects are maps with
%% binary keys, arrays lists, strings binaries, `true', `false', numbers as
%% integers (any size) or floats, and `null' as the atom `null' (or the
%% term given as the `null' option, e.g. `nil' for Elixir).
%% ```
%% {ok, #{<<"a">> := [1, 2.5, null]}} = ws_port_json:decode(<<"{\"a\": [1, 2.5, null]}">>),
%% {ok, IoData} = ws_port_json:encode(#{<<"a">> => [1, 2.5, null]}).
%% '''
%% The decoder accepts exactly RFC 8259's grammar: whitespace is space, tab,
%% CR and LF; numbers are `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?';
%% strings are valid UTF-8 (overlong forms and encoded surrogates are
%% refused) without raw control characters; `\u' escapes are decoded and a
%% high surrogate must be followed by a low one (a lone surrogate cannot be
%% represented in UTF-8 and is refused). A float that does not fit in a
%% double (`1e400') is refused; an integer has no size limit. Nesting is
%% bounded (`max_depth', default 512), so a hostile document cannot exhaust
%% the stack. A duplicated object key keeps its last value. Errors name the
%% problem and its byte offset:
%% `{error, {unexpected_byte, Byte, Offset}}', `{error, {unexpected_end,
%% Offset}}', `{error, {invalid_utf8, Offset}}', `{error,
%% {control_character, Byte, Offset}}', `{error, {invalid_escape, Offset}}',
%% `{error, {lone_surrogate, Offset}}', `{error, {number_out_of_range,
%% Offset}}', `{error, {too_deep, MaxDepth, Offset}}', `{error,
%% {trailing_data, Offset}}'.
%%
%% Encoding takes maps (keys: binaries, atoms or integers), lists (as
%% arrays), binaries (valid UTF-8, as strings), integers, floats (shortest
%% form that reads back to the same double), `true', `false', `null' and
%% `nil' (both JSON null, for Erlang and Elixir users), and other atoms (as
%% strings). It escapes `"', `\' and control characters and nothing else.
%% A term it cannot encode is `{error, {unsupported, Term}}' (tuples, pids,
%% Elixir structs, ...), an invalid UTF-8 binary `{error, {invalid_utf8,
%% Binary}}', a key of another type `{error, {invalid_key, Key}}'.
-module(ws_port_json).

-export([decode/1, decode/2, encode/1, encode_to_binary/1]).

-export_type([json/0, decode_opts/0, decode_error/0]).

-type json() ::
    #{binary() => json()}
    | [json()]
    | binary()
    | number()
    | boolean()
    | null
    | term().
-type decode_opts() :: #{null => term(), max_depth => pos_integer()}.
-type decode_error() ::
    {unexpected_byte, byte(), non_neg_integer()}
    | {unexpected_end, non_neg_integer()}
    | {invalid_utf8, non_neg_integer()}
    | {control_character, byte(), non_neg_integer()}
    | {invalid_escape, non_neg_integer()}
    | {lone_surrogate, non_neg_integer()}
    | {number_out_of_range, non_neg_integer()}
    | {too_deep, pos_integer(), non_neg_integer()}
    | {trailing_data, non_neg_integer()}
    | {bad_option, opts | max_depth, term()}
    | not_binary.

-define(MAX_DEPTH, 512).
-define(IS_WS(C), (C =:= $\s orelse C =:= $\n orelse C =:= $\r orelse C =:= $\t)).
-define(IS_DIGIT(C), (C >= $0 andalso C =< $9)).

%% Decoder options travel as a tuple: {NullTerm, MaxDepth}.

%%====================================================================
%% Decoding
%%====================================================================

%% @equiv decode(Bin, #{})
-spec decode(binary()) -> {ok, json()} | {error, decode_error()}.
decode(Bin) ->
    decode(Bin, #{}).

%% @doc Decodes one JSON document (surrounding whitespace allowed).
%% Options: `null' (the term for JSON null, default `null'), `max_depth'
%% (the deepest nesting of arrays and objects accepted, default 512).
%% Options that are not a map, or a `max_depth' that is not a positive
%% integer, are `{error, {bad_option, Name, Value}}'.
-spec decode(binary(), decode_opts()) -> {ok, json()} | {error, decode_error()}.
decode(Bin, #{max_depth := D}) when is_binary(Bin), not (is_integer(D) andalso D > 0) ->
    {error, {bad_option, max_depth, D}};
decode(Bin, Opts) when is_binary(Bin), is_map(Opts) ->
    O = {maps:get(null, Opts, null), maps:get(max_depth, Opts, ?MAX_DEPTH)},
    try value(ws(Bin), O, 0) of
        {Value, Rest} ->
            case ws(Rest) of
                <<>> -> {ok, Value};
                Trailing -> {error, {trailing_data, byte_size(Bin) - byte_size(Trailing)}}
            end
    catch
        throw:{json, Kind, Rest} -> {error, error_at(Kind, byte_size(Bin) - byte_size(Rest))}
    end;
decode(Bin, Opts) when is_binary(Bin) ->
    {error, {bad_option, opts, Opts}};
decode(_, _) ->
    {error, not_binary}.

error_at(unexpected, Pos) -> {unexpected_end, Pos};
error_at({unexpected, Byte}, Pos) -> {unexpected_byte, Byte, Pos};
error_at({control_character, Byte}, Pos) -> {control_character, Byte, Pos};
error_at({too_deep, Max}, Pos) -> {too_deep, Max, Pos};
error_at(Kind, Pos) -> {Kind, Pos}.

ws(<<C, Rest/binary>>) when ?IS_WS(C) -> ws(Rest);
ws(Bin) -> Bin.

value(<<$", Rest/binary>>, _O, _D) ->
    string(Rest, Rest, 0);
value(<<${, Rest/binary>>, {_, Max} = O, D) when D < Max ->
    object(ws(Rest), O, D + 1);
value(<<$[, Rest/binary>>, {_, Max} = O, D) when D < Max ->
    array(ws(Rest), O, D + 1);
value(<<C, _/binary>> = Bin, {_, Max}, _D) when C =:= ${; C =:= $[ ->
    bad({too_deep, Max}, Bin);
value(<<C, _/binary>> = Bin, _O, _D) when ?IS_DIGIT(C); C =:= $- ->
    number(Bin);
value(<<"true", Rest/binary>>, _O, _D) ->
    {true, Rest};
value(<<"false", Rest/binary>>, _O, _D) ->
    {false, Rest};
value(<<"null", Rest/binary>>, {Null, _}, _D) ->
    {Null, Rest};
value(Bin, _O, _D) ->
    unexpected(Bin).

-spec unexpected(binary()) -> no_return().
unexpected(<<>> = Bin) -> bad(unexpected, Bin);
unexpected(<<C, _/binary>> = Bin) -> bad({unexpected, C}, Bin).

-spec bad(term(), binary()) -> no_return().
bad(Kind, Rest) ->
    throw({json, Kind, Rest}).

%% --- arrays: [ value (, value)* ] ---

array(<<$], Rest/binary>>, _O, _D) ->
    {[], Rest};
array(Bin, O, D) ->
    elements(Bin, O, D, []).

elements(Bin, O, D, Acc) ->
    {Value, Rest} = value(Bin, O, D),
    %% the common case first: no whitespace after the value
    case Rest of
        <<$,, Rest1/binary>> -> elements(ws(Rest1), O, D, [Value | Acc]);
        <<$], Rest1/binary>> -> {lists:reverse(Acc, [Value]), Rest1};
        _ -> elements_ws(Rest, O, D, [Value | Acc])
    end.

elements_ws(Rest, O, D, [Value | Acc]) ->
    case ws(Rest) of
        <<$,, Rest1/binary>> -> elements(ws(Rest1), O, D, [Value | Acc]);
        <<$], Rest1/binary>> -> {lists:reverse(Acc, [Value]), Rest1};
        Other -> unexpected(Other)
    end.

%% --- objects: { string : value (, string : value)* } ---

object(<<$}, Rest/binary>>, _O, _D) ->
    {#{}, Rest};
object(Bin, O, D) ->
    members(Bin, O, D, []).

members(<<$", Rest/binary>>, O, D, Acc) ->
    {Key, Rest1} = string(Rest, Rest, 0),
    case Rest1 of
        <<$:, Rest2/binary>> ->
            member_value(Key, Rest2, O, D, Acc);
        _ ->
            case ws(Rest1) of
                <<$:, Rest2/binary>> -> member_value(Key, Rest2, O, D, Acc);
                Other -> unexpected(Other)
            end
    end;
members(Bin, _O, _D, _Acc) ->
    unexpected(Bin).

member_value(Key, Rest, O, D, Acc) ->
    {Value, Rest1} = value(ws(Rest), O, D),
    Acc1 = [{Key, Value} | Acc],
    %% the common case first: no whitespace after the value
    Rest2 =
        case Rest1 of
            <<C, _/binary>> when C =:= $,; C =:= $} -> Rest1;
            _ -> ws(Rest1)
        end,
    case Rest2 of
        <<$,, Rest3/binary>> ->
            members(ws(Rest3), O, D, Acc1);
        <<$}, Rest3/binary>> ->
            %% from_list keeps the last of duplicated keys
            {maps:from_list(lists:reverse(Acc1)), Rest3};
        Other ->
            unexpected(Other)
    end.

%% --- strings ---
%% Fast path: no escape, so the result is a part of the input (no copy).
%% `Start' is the binary from the first byte of the string, N the bytes
%% of it scanned so far.

string(<<$", Rest/binary>>, Start, N) ->
    <<Str:N/binary, _/binary>> = Start,
    {Str, Rest};
string(<<$\\, _/binary>> = Bin, Start, N) ->
    escaped(Bin, [binary:part(Start, 0, N)]);
string(<<C, Rest/binary>>, Start, N) when C >= 16#20, C < 16#80 ->
    string(Rest, Start, N + 1);
string(Bin, Start, N) ->
    Size = utf8_char(Bin),
    <<_:Size/binary, Rest/binary>> = Bin,
    string(Rest, Start, N + Size).

%% The size of the UTF-8 character at the head (>= 0x80), or a throw.
utf8_char(<<C, _/binary>> = Bin) when C < 16#20 -> bad({control_character, C}, Bin);
utf8_char(<<C/utf8, _/binary>>) when C < 16#800 -> 2;
utf8_char(<<C/utf8, _/binary>>) when C < 16#10000 -> 3;
utf8_char(<<_/utf8, _/binary>>) -> 4;
utf8_char(<<>> = Bin) -> bad(unexpected, Bin);
utf8_char(Bin) -> bad(invalid_utf8, Bin).

%% Slow path: Acc is an iolist of what was decoded so far.
escaped(<<$\\, C, Rest/binary>> = Bin, Acc) ->
    case C of
        $" -> chunk(Rest, Rest, 0, [Acc, $"]);
        $\\ -> chunk(Rest, Rest, 0, [Acc, $\\]);
        $/ -> chunk(Rest, Rest, 0, [Acc, $/]);
        $b -> chunk(Rest, Rest, 0, [Acc, $\b]);
        $f -> chunk(Rest, Rest, 0, [Acc, $\f]);
        $n -> chunk(Rest, Rest, 0, [Acc, $\n]);
        $r -> chunk(Rest, Rest, 0, [Acc, $\r]);
        $t -> chunk(Rest, Rest, 0, [Acc, $\t]);
        $u -> unicode_escape(Rest, Bin, Acc);
        _ -> bad(invalid_escape, Bin)
    end;
escaped(Bin, _Acc) ->
    bad(unexpected, Bin).

unicode_escape(<<A, B, C, D, Rest/binary>>, Esc, Acc) ->
    case hex4(A, B, C, D) of
        Hi when Hi >= 16#D800, Hi =< 16#DBFF ->
            case Rest of
                <<"\\u", E, F, G, H, Rest1/binary>> ->
                    case hex4(E, F, G, H) of
                        Lo when Lo >= 16#DC00, Lo =< 16#DFFF ->
                            Code = 16#10000 + ((Hi - 16#D800) bsl 10) + (Lo - 16#DC00),
                            chunk(Rest1, Rest1, 0, [Acc, <<Code/utf8>>]);
                        bad ->
                            bad(invalid_escape, Rest);
                        _ ->
                            bad(lone_surrogate, Esc)
                    end;
                _ ->
                    bad(lone_surrogate, Esc)
            end;
        Lo when Lo >= 16#DC00, Lo =< 16#DFFF ->
            bad(lone_surrogate, Esc);
        bad ->
            bad(invalid_escape, Esc);
        Code ->
            chunk(Rest, Rest, 0, [Acc, <<Code/utf8>>])
    end;
unicode_escape(_, Esc, _Acc) ->
    bad(invalid_escape, Esc).

hex4(A, B, C, D) ->
    case {hex(A), hex(B), hex(C), hex(D)} of
        {W, X, Y, Z} when is_integer(W), is_integer(X), is_integer(Y), is_integer(Z) ->
            (W bsl 12) bor (X bsl 8) bor (Y bsl 4) bor Z;
        _ ->
            bad
    end.

hex(C) when C >= $0, C =< $9 -> C - $0;
hex(C) when C >= $a, C =< $f -> C - $a + 10;
hex(C) when C >= $A, C =< $F -> C - $A + 10;
hex(_) -> bad.

%% Like string/3 after the first escape: collects into Acc.
chunk(<<$", Rest/binary>>, Start, N, Acc) ->
    {iolist_to_binary([Acc, binary:part(Start, 0, N)]), Rest};
chunk(<<$\\, _/binary>> = Bin, Start, N, Acc) ->
    escaped(Bin, [Acc, binary:part(Start, 0, N)]);
chunk(<<C, Rest/binary>>, Start, N, Acc) when C >= 16#20, C < 16#80 ->
    chunk(Rest, Start, N + 1, Acc);
chunk(Bin, Start, N, Acc) ->
    Size = utf8_char(Bin),
    <<_:Size/binary, Rest/binary>> = Bin,
    chunk(Rest, Start, N + Size, Acc).

%% --- numbers ---

number(Bin) ->
    {Len, Kind} = number_int(Bin, 0),
    <<Text:Len/binary, Rest/binary>> = Bin,
    case Kind of
        integer ->
            {binary_to_integer(Text), Rest};
        Float ->
            try binary_to_float(float_text(Float, Text)) of
                F -> {F, Rest}
            catch
                error:badarg -> bad(number_out_of_range, Bin)
            end
    end.

number_int(<<$-, Rest/binary>>, 0) ->
    number_int(Rest, 1);
number_int(<<$0, Rest/binary>>, N) ->
    number_frac(Rest, N + 1);
number_int(<<C, Rest/binary>>, N) when C >= $1, C =< $9 ->
    Rest1 = digits(Rest),
    number_frac(Rest1, N + 1 + byte_size(Rest) - byte_size(Rest1));
number_int(Bin, _N) ->
    unexpected(Bin).

number_frac(<<$., C, Rest/binary>>, N) when ?IS_DIGIT(C) ->
    Rest1 = digits(Rest),
    number_exp(Rest1, N + 2 + byte_size(Rest) - byte_size(Rest1), fraction);
number_frac(<<$., Rest/binary>>, _N) ->
    unexpected(Rest);
number_frac(Bin, N) ->
    number_exp(Bin, N, integer).

number_exp(<<E, Rest/binary>>, N, Kind) when E =:= $e; E =:= $E ->
    {Sign, Rest1} =
        case Rest of
            <<S, R/binary>> when S =:= $+; S =:= $- -> {1, R};
            _ -> {0, Rest}
        end,
    case Rest1 of
        <<C, Rest2/binary>> when ?IS_DIGIT(C) ->
            Rest3 = digits(Rest2),
            Exp = {exponent, Kind},
            {N + 1 + Sign + 1 + byte_size(Rest2) - byte_size(Rest3), Exp};
        _ ->
            unexpected(Rest1)
    end;
number_exp(_Bin, N, Kind) ->
    {N, Kind}.

digits(<<C, Rest/binary>>) when ?IS_DIGIT(C) -> digits(Rest);
digits(Bin) -> Bin.

%% binary_to_float/1 wants digits on both sides of a '.': "1e5" -> "1.0e5".
float_text(fraction, Text) ->
    Text;
float_text({exponent, fraction}, Text) ->
    Text;
float_text({exponent, integer}, Text) ->
    [Mantissa, Exp] = binary:split(Text, [<<"e">>, <<"E">>]),
    <<Mantissa/binary, ".0e", Exp/binary>>.

%%====================================================================
%% Encoding
%%====================================================================

%% @doc Encodes a term as JSON text (iodata). See the module doc for the
%% terms accepted.
-spec encode(term()) -> {ok, iodata()} | {error, term()}.
encode(Term) ->
    try
        {ok, enc(Term)}
    catch
        throw:{json_encode, Reason} -> {error, Reason}
    end.

%% @doc As {@link encode/1}, as one binary.
-spec encode_to_binary(term()) -> {ok, binary()} | {error, term()}.
encode_to_binary(Term) ->
    case encode(Term) of
        {ok, IoData} -> {ok, iolist_to_binary(IoData)};
        Error -> Error
    end.

enc(Bin) when is_binary(Bin) -> enc_string(Bin);
enc(Int) when is_integer(Int) -> integer_to_binary(Int);
enc(F) when is_float(F) -> float_to_binary(F, [short]);
enc(true) -> <<"true">>;
enc(false) -> <<"false">>;
enc(null) -> <<"null">>;
enc(nil) -> <<"null">>;
enc(Atom) when is_atom(Atom) -> enc_string(atom_to_binary(Atom, utf8));
enc(List) when is_list(List) -> enc_array(List);
enc(#{'__struct__' := _} = Struct) -> throw({json_encode, {unsupported, Struct}});
enc(Map) when is_map(Map) -> enc_object(maps:to_list(Map));
enc(Other) -> throw({json_encode, {unsupported, Other}}).

enc_array([]) ->
    <<"[]">>;
enc_array([First | Rest]) ->
    [$[, enc(First) | enc_elements(Rest)].

enc_elements([]) -> [$]];
enc_elements([E | Rest]) -> [$,, enc(E) | enc_elements(Rest)];
enc_elements(Improper) -> throw({json_encode, {unsupported, Improper}}).

enc_object([]) ->
    <<"{}">>;
enc_object([{K, V} | Rest]) ->
    [${, enc_key(K), $:, enc(V) | enc_members(Rest)].

enc_members([]) -> [$}];
enc_members([{K, V} | Rest]) -> [$,, enc_key(K), $:, enc(V) | enc_members(Rest)].

enc_key(K) when is_binary(K) -> enc_string(K);
enc_key(K) when is_atom(K) -> enc_string(atom_to_binary(K, utf8));
enc_key(K) when is_integer(K) -> [$", integer_to_binary(K), $"];
enc_key(K) -> throw({json_encode, {invalid_key, K}}).

%% A string with nothing to escape is the binary itself between quotes.
enc_string(Bin) ->
    case plain(Bin, Bin) of
        true -> [$", Bin, $"];
        {escape, N} -> [$", escape(Bin, Bin, 0, N, []), $"]
    end.

plain(<<C, Rest/binary>>, Orig) when C >= 16#20, C < 16#80, C =/= $", C =/= $\\ ->
    plain(Rest, Orig);
plain(<<>>, _Orig) ->
    true;
plain(<<C, _/binary>> = Bin, Orig) when C < 16#80 ->
    {escape, byte_size(Orig) - byte_size(Bin)};
plain(<<_/utf8, Rest/binary>>, Orig) ->
    plain(Rest, Orig);
plain(_, Orig) ->
    throw({json_encode, {invalid_utf8, Orig}}).

%% escape(Rest, Orig, ChunkStart, Pos, Acc): Orig[ChunkStart, Pos) needs no
%% escape and is emitted as one part.
escape(Bin, Orig, Start, Pos, Acc) ->
    Skip = Pos - Start,
    case Bin of
        <<_:Pos/binary, C, _/binary>> when C >= 16#20, C < 16#80, C =/= $", C =/= $\\ ->
            escape(Bin, Orig, Start, Pos + 1, Acc);
        <<_:Pos/binary, C, _/binary>> when C < 16#80 ->
            Part = binary:part(Orig, Start, Skip),
            escape(Bin, Orig, Pos + 1, Pos + 1, [Acc, Part, escape_char(C)]);
        <<_:Pos/binary, U/utf8, _/binary>> ->
            escape(Bin, Orig, Start, Pos + utf8_size(U), Acc);
        <<_:Pos/binary>> ->
            [Acc, binary:part(Orig, Start, Skip)];
        _ ->
            throw({json_encode, {invalid_utf8, Orig}})
    end.

utf8_size(U) when U < 16#80 -> 1;
utf8_size(U) when U < 16#800 -> 2;
utf8_size(U) when U < 16#10000 -> 3;
utf8_size(_) -> 4.

escape_char($") -> <<"\\\"">>;
escape_char($\\) -> <<"\\\\">>;
escape_char($\n) -> <<"\\n">>;
escape_char($\r) -> <<"\\r">>;
escape_char($\t) -> <<"\\t">>;
escape_char($\b) -> <<"\\b">>;
escape_char($\f) -> <<"\\f">>;
escape_char(C) -> <<"\\u00", (hex_digit(C bsr 4)), (hex_digit(C band 15))>>.

hex_digit(D) when D < 10 -> $0 + D;
hex_digit(D) -> $a + D - 10.
