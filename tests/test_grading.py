import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2s.errors import UserError
from l2s.grading import answer_span, extract_answer, grade, is_equivalent, reduce_reference, split_reasoning


def test_extraction_prefers_after_think():
    assert extract_answer("<think>\nAnswer: 1\n</think>\nAnswer: 2") == "2"
    assert extract_answer("<think>\nlooping forever") is None
    assert extract_answer(r"blah \boxed{\frac{3}{4}}") == r"\frac{3}{4}"
    assert extract_answer("answer: 17.") == "17"


def test_equivalence_math_verify_paths():
    assert is_equivalent(r"\frac{3}{4}", "0.75")
    assert is_equivalent("-5", "-5") and not is_equivalent("5", "-5")
    assert not is_equivalent("x+1", "x+2")
    assert not is_equivalent("not math at all", "3")


def test_r1_style_split():
    assert split_reasoning("a\nb\n</think>\n\nAnswer: 3", think_opened=True) == ("a\nb", "Answer: 3")


@given(st.integers(-(10**9), 10**9), st.integers(-(10**9), 10**9))
def test_integer_grading_is_exact(a, b):
    completion = f"<think>\nsteps\n</think>\nAnswer: {a}"
    assert grade([completion], [str(b)]) == [a == b]


def test_grading_off_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        assert ex.submit(is_equivalent, r"\frac{1}{2}", "0.5").result() is True


def test_explicit_phrases_and_the_last_one_wins():
    assert extract_answer("The answer is 36.") == "36"
    assert extract_answer("Tom has 3 + 5 = 8 apples.\nThe answer is: 8") == "8"
    assert extract_answer("Natalia sold 48+24 = 72 clips.\n#### 72") == "72"
    assert extract_answer("**Final Answer**\n\\[ \\frac{5}{12} \\]") == r"\frac{5}{12}"
    assert extract_answer("The final answer is $\\frac{7}{2}$. I hope it is correct.") == r"\frac{7}{2}"
    assert extract_answer("The answer is 12.\nWait, 24 - 4 = 20 and 20 / 2 = 10.\nThe answer is 10.") == "10"
    # A boxed answer beats any phrase; the last box counts.
    assert extract_answer(r"The answer is 3. So \boxed{4}, no: \boxed{5}.") == "5"
    # "this answer is helpful" is not a final-answer phrase.
    assert extract_answer("So the answer is 13 dollars. I hope this answer is helpful!") == "13"


def test_strict_needs_a_box_or_a_phrase():
    prose = "Lisa had $20 and spent $7, so 20 - 7 = 13 dollars are left"
    assert extract_answer(prose) == "13" and extract_answer(prose, "strict") is None
    assert grade([prose], ["13"]) == [True] and grade([prose], ["13"], "strict") == [False]
    assert extract_answer("The product of 7 and 8 is **56**") == "56"
    assert grade([r"\boxed{13}", "Answer: 13"], ["13", "13"], "strict") == [True, True]
    with pytest.raises(UserError, match="unknown grader 'lenient'"):
        grade(["Answer: 1"], ["1"], "lenient")


def test_cut_completions_have_no_answer():
    assert extract_answer("<think>\n17 * 24 = 408, let me check: 24 * 17 = 24 * 10 +") is None
    # R1-distill: the template opened the think block, so the completion starts inside it.
    reasoning = "So 3 times 12 is 36, but wait, maybe I misread"
    assert extract_answer(reasoning) == "36" and extract_answer(reasoning, think_opened=True) is None
    assert extract_answer(reasoning + "\n</think>\n\n\\boxed{36}", think_opened=True) == "36"
    assert extract_answer(r"so the area is $\boxed{\frac{25") is None  # cut inside its box
    assert extract_answer("First, 17 * 20 = 340. Adding 68 gives 340 + 68 =") is None  # cut mid-equation
    assert extract_answer("<think>\na\n</think>\nThe answer is 63.<think>\nwait, 9 * 8 is") is None


@given(st.text(alphabet="ab 0123456789.,$=+\n:#*{}\\boxedAnswr", max_size=60))
def test_an_answer_is_never_empty_and_is_in_the_text(text):
    span = answer_span(text)
    answer = extract_answer(text)
    assert (span is None) == (answer is None)
    if answer is not None:
        assert answer.strip() and text[span[0] : span[1]] == answer


def test_answer_span_locates_the_answer_as_written():
    text = "<think>\nAnswer: 1\n</think>\nShe pays 3 * 6 = $18.\nThe answer is $18."
    start, end = answer_span(text)
    assert text[start:end] == "$18" and start == text.rindex("$18")
    text = "The answer is 1,000 dollars."
    assert text[slice(*answer_span(text))] == "1,000"


def test_normalisation_before_comparing():
    for pred, ref in [
        ("1,000", "1000"),
        ("$18", "18"),
        (r"\$18", "18"),
        ("€45", "45"),
        ("13 dollars", "13"),
        ("5 cm", "5"),
        (r"5\text{ cm}", "5"),
        (r"42\,\text{km}", "42"),
        (r"12{,}500", "12500"),
        ("25%", "25"),
        (r"20\%", r"\frac{1}{5}"),
        ("18.", "18"),
        ("$18$", "18"),
        ("−75", "-75"),
        (r"30^\circ", "30"),
        ("2.50", "2.5"),
        ("7 and 8", "8, 7"),
    ]:
        assert is_equivalent(pred, ref), (pred, ref)
    for pred, ref in [
        ("3 x", "3"),
        ("2 and 3", "2"),
        ("33%", "25"),
        ("0.333", r"\frac{1}{3}"),
        ("1,2", "12"),
    ]:
        assert not is_equivalent(pred, ref), (pred, ref)


def test_reduce_reference():
    gsm8k = (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72 clips.\n#### 72"
    )
    assert reduce_reference(gsm8k) == "72"
    math = "The roots are $-3$ and $2$, so the sum is $-3 + 2 = \\boxed{-1}$.\nWe check: ..."
    assert reduce_reference(math) == "-1"
    assert reduce_reference("  \\frac{1}{2}\n") == r"\frac{1}{2}"
    assert reduce_reference("$1,000") == "$1,000"
    assert reduce_reference("She sold 24 clips in May.\nThen she sold 48 more in June.") is None
    assert reduce_reference("   ") is None


def test_flexible_extraction_off_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        assert ex.submit(grade, ["so she has 13 left"], ["13"]).result() == [True]


def test_grading_the_embedded_task_stays_fast():
    """A quickstart grades ~11,000 arith samples: the integer fast path keeps that far under a second."""
    import time

    completions = [f"<think>\n{i} + 7 = {i + 7}\ncheck: ok\n</think>\nAnswer: {i + 7}" for i in range(11_000)]
    answers = [str(i + 7 + (i % 3 == 0)) for i in range(11_000)]
    t0 = time.perf_counter()
    verdicts = grade(completions, answers)
    assert time.perf_counter() - t0 < 1.0
    assert verdicts == [i % 3 != 0 for i in range(11_000)]
