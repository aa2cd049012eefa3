//! Unit tests of the pickle machine (a file of their own to keep vm.rs short).

use super::*;

#[test]
fn protocol_2_containers_and_numbers() {
    // pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': (b'x', 'é')}, protocol=2) rebuilt by
    // hand: PROTO 2, EMPTY_DICT, BINPUT, MARK, keys and values, SETITEMS, STOP.
    let mut data = vec![0x80, 2, b'}', b'q', 0, b'('];
    data.extend([b'X', 1, 0, 0, 0, b'a', b']', b'q', 1, b'(', b'K', 1, b'J']);
    data.extend((-2i32).to_le_bytes());
    data.push(b'G');
    data.extend(3.5f64.to_be_bytes());
    data.extend([
        b'N', 0x88, b'e', b'X', 1, 0, 0, 0, b'b', b'C', 1, b'x', b'X', 2, 0, 0, 0, 0xc3, 0xa9, 0x86, b'u', b'.',
    ]);
    let pickle = parse(&data).unwrap();
    let Value::Dict(dict) = &pickle.root else { panic!("not a dict") };
    let dict = dict.borrow();
    let Value::List(list) = &dict[0].1 else { panic!("not a list") };
    let list = list.borrow();
    assert!(
        matches!(list[..], [Value::Int(1), Value::Int(-2), Value::Float(f), Value::None, Value::Bool(true)] if f == 3.5)
    );
    let Value::Tuple(tuple) = &dict[1].1 else { panic!("not a tuple") };
    assert!(matches!(&tuple[..], [Value::Bytes(b), Value::Str(s)] if &b[..] == b"x" && &s[..] == "é"));
}

#[test]
fn globals_are_recorded_never_called() {
    // cos.system('echo pwned') as protocol 0: GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP.
    let data = b"cos\nsystem\n(S'echo pwned'\ntR.";
    let pickle = parse(data).unwrap();
    let Value::Object(object) = &pickle.root else { panic!("not an object") };
    let object = object.borrow();
    assert_eq!(object.callable.global_name(), Some(("os", "system")));
}

#[test]
fn truncation_and_unknown_opcodes_are_errors() {
    assert!(parse(b"").unwrap_err().message.contains("without STOP"));
    assert!(parse(&[0x80, 4, b'X', 0xff, 0xff, 0xff, 0x7f]).unwrap_err().message.contains("truncated"));
    assert!(parse(&[0x80, 4, 0xfe]).unwrap_err().message.contains("unknown opcode 0xfe"));
    assert!(parse(&[0x80, 5, 0x97]).unwrap_err().message.contains("out-of-band"));
    assert!(parse(b"h\x05.").unwrap_err().message.contains("memo entry 5"));
}

#[test]
fn a_list_that_contains_itself_is_freed() {
    // EMPTY_LIST, BINPUT 0, BINGET 0, APPEND, STOP: l = []; l.append(l)
    let pickle = parse(b"]q\x00h\x00a.").unwrap();
    let Value::List(list) = &pickle.root else { panic!("not a list") };
    let weak = std::rc::Rc::downgrade(list);
    drop(pickle);
    assert!(weak.upgrade().is_none(), "the cycle kept the list alive");
}

#[test]
fn long_integers_decode_twos_complement() {
    assert!(matches!(long_value(&[0xff]), Value::Int(-1)));
    // Python writes 32768 as `00 80 00`; `00 80` alone is -32768.
    assert!(matches!(long_value(&[0x00, 0x80, 0x00]), Value::Int(32768)));
    assert!(matches!(long_value(&[0x00, 0x80]), Value::Int(-32768)));
    assert!(matches!(long_value(&[0; 9]), Value::BigInt(_)));
}

#[test]
fn deep_nesting_is_freed_without_recursion_on_every_path() {
    // A million nested tuples (each TUPLE1 wraps the last): freed at the end of a parse, when
    // POP discards it, and when the parse fails with it on the stack (the fuzzer's find).
    let deep = |tail: &[u8]| {
        let mut data = vec![0x80, 2, b')'];
        data.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        data.extend_from_slice(tail);
        data
    };
    assert!(parse(&deep(b".")).is_ok());
    assert!(matches!(parse(&deep(b"0N.")).map(|p| matches!(p.root, Value::None)), Ok(true)));
    assert!(parse(&deep(b"\xaa")).is_err());
    // Lists and dicts nested through their opcodes, left unfinished.
    let mut lists = vec![0x80, 2];
    lists.extend(b"(]".repeat(200_000));
    assert!(parse(&lists).is_err());
}
